"""The variational ladder autoencoder's picture (Zhao, Song, Ermon 2017): decoder means in which one
layer's code varies and the others stay fixed, for a run of ``gvae train --task vlae`` (or any run whose
model has ``prior_sample`` and ``likelihood_params``: gvae's hierarchy varies z_l through the chain below it).

    python examples/vlae_traversals.py RUN_DIR --out traversals.png [--bases 3] [--columns 8] [--seed 0]

The rows come in blocks, one per layer, bottom first: each row is one draw of every code from the prior
with layer l's code replaced, column by column, by fresh draws. Needs matplotlib (``gvae[plot]``).
"""
import sys

import numpy as np

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--bases", type=int, default=3, help="rows per layer: draws of the other codes")
    p.add_argument("--columns", type=int, default=8, help="draws of the varied code per row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.bases, args.columns) < 1:
        p.error("--bases and --columns must be >= 1")
    return args


def traversals(model, params, bases, columns, rng):
    """(layers * bases * columns, n_in) decoder means, float64: for each layer (bottom first) and each of
    ``bases`` prior draws of the noise, ``columns`` draws of that layer's noise alone."""
    ends = np.cumsum(model.sizes)
    images = []
    for end, d in zip(ends, model.sizes):
        for base in rng.standard_normal((bases, model.noise_size)).astype(model.dtype):
            eps = np.tile(base, (columns, 1))
            eps[:, end - d:end] = rng.standard_normal((columns, d))
            zs = model.prior_sample(params, eps)
            images.append(np.asarray(model.likelihood.mean(model.likelihood_params(params, zs), params), np.float64))
    return np.concatenate(images)


def main(args):
    from gvae.plots.images import plot_image_grid
    from gvae.training.runs import load_model
    model, params, config = load_model(args.run)
    images = traversals(model, params, args.bases, args.columns, np.random.default_rng(args.seed))
    layers = ", ".join(f"z{i + 1} ({d})" for i, d in enumerate(model.sizes))
    path = plot_image_grid(images, args.out, f"{config.task}: one code varied per row, {args.bases} rows a layer",
                           subtitle=f"layers bottom first: {layers}", cols=args.columns)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

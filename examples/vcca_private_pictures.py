"""VCCA-private's picture (Wang, Yan, Lee, Livescu 2016): the shared code of a test image held fixed while the
private codes are drawn from their prior, decoded in both views, for a run of ``gvae train --task vcca
--private P``.

    python examples/vcca_private_pictures.py RUN_DIR --out private.png [--columns 8] [--seed 0] [--data D]

One row per digit class, the first test pair of that class: the first column is its view 1, whose mean
shared code z (of q(z|x1)) every column of the row uses; the other columns decode (z, h) with h ~ N(0, I)
drawn afresh per column (the same h in both views' rows). Rows 1-10 show view 1's decoder means, rows 11-20
view 2's. Where the private codes took what the views do not share (view 1's rotation and style, view 2's
noise), a row keeps its digit while its appearance varies. Needs matplotlib (``gvae[plot]``).
"""
import sys

import numpy as np

from gvae.io.arguments import ArgumentParser

CLASSES = 10


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--columns", type=int, default=8, help="draws of the private codes per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="the data set the run trained on (default: MNIST from the cache)")
    args = p.parse_args(argv)
    if args.columns < 1:
        p.error(f"--columns must be >= 1, got {args.columns}")
    return args


def first_of_each_class(labels, classes=CLASSES):
    """The index of the first pair of each class 0..classes-1 in ``labels`` (ValueError naming a class with
    no pair)."""
    labels = np.asarray(labels)
    missing = [c for c in range(classes) if not np.any(labels == c)]
    if missing:
        raise ValueError(f"the test split has no pair of class {missing}: this picture takes one of each")
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(classes)])


def private_draws(model, params, x1, columns, rng):
    """The decoder means of view 1 (B, columns, n_in) and of view 2 (B, columns, n_in2), float64: for each
    row of x1 (B, n_in), z = the mean of q(z|x1) and, per column, the private codes h1, h2 ~ N(0, I), one
    draw of both shared by the rows."""
    _, z = model.shared(params, x1)
    h = rng.standard_normal((columns, 2, model.private)).astype(model.dtype)
    codes = np.empty((columns, len(x1), model.size + model.private), dtype=model.dtype)
    codes[..., :model.size] = z
    views = []
    for k, (decoder, view) in enumerate(zip(model.decoders, model.views)):
        codes[..., model.size:] = h[:, k, None]
        means = np.asarray(view.mean(decoder(params, codes), params), dtype=np.float64)  # (columns, B, n_k)
        views.append(means.transpose(1, 0, 2))
    return tuple(views)


def main(args):
    from gvae.io.mnist import load_mnist
    from gvae.io.noisy_mnist import noisy_mnist
    from gvae.plots.images import plot_image_grid
    from gvae.training.runs import load_model
    from gvae.models.vcca.task import NOISY_SEED
    try:
        model, params, config = load_model(args.run)
    except (OSError, ValueError) as e:  # no run there, a damaged or diverged one
        print(f"vcca_private_pictures: {e}", file=sys.stderr)
        return 2
    if config.task != "vcca" or not config.options.private:
        what = f"a {config.task} run" if config.task != "vcca" else "a VCCA without private codes"
        print(f"vcca_private_pictures: {args.run} holds {what}; this picture draws VCCA-private's private codes "
              "(gvae train --task vcca --private P)", file=sys.stderr)
        return 2
    try:  # the data the run trained on, and one test pair of each class in it
        x1, _, labels = noisy_mnist(load_mnist(args.data), NOISY_SEED)["test"]
        rows = first_of_each_class(labels)
    except (OSError, ValueError) as e:
        print(f"vcca_private_pictures: {e}", file=sys.stderr)
        return 2
    x1 = np.ascontiguousarray(x1[rows], dtype=model.dtype)
    views = private_draws(model, params, x1, args.columns, np.random.default_rng(args.seed))
    source = x1.astype(np.float64)[:, None]
    images = np.concatenate([np.concatenate([source, v], axis=1) for v in views]).reshape(-1, model.n_in)
    path = plot_image_grid(images, args.out, f"VCCA-private ({config.posterior}, {model.size} shared, "
                           f"{model.private} private units): a test image's shared code, private codes drawn",
                           subtitle="first column: the image whose shared code its row keeps; rows 1-10 view 1's "
                                    "decoder, rows 11-20 view 2's", cols=1 + args.columns)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

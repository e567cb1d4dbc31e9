"""Latent traversals of a one-layer run (``gvae train --task corex`` or ``--task generate``, a beta-VAE
among them): the disentanglement picture of the CorEx and beta-VAE papers. A test image is encoded to the
mean of q(z|x); each row varies one unit of that code over evenly spaced values with the others fixed and
shows the decoder's means. The rows are the units of largest mean marginal KL KL(q(z_j|x) || N(0, 1))
over the first test images, the most informative first (each row's title gives its KL in nats).

    python examples/latent_traversals.py RUN_DIR --out traversals.png [--units 8] [--columns 9]
        [--span 3] [--image 0] [--images 1000]

Needs matplotlib (``gvae[plot]``) and the run's MNIST (as ``gvae train`` loads it).
"""
import sys

import numpy as np

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--units", type=int, default=8, help="rows: the units of largest marginal KL")
    p.add_argument("--columns", type=int, default=9, help="values per row, evenly spaced in [-span, span]")
    p.add_argument("--span", type=float, default=3.0, help="the largest value a unit takes")
    p.add_argument("--image", type=int, default=0, help="the test image whose code is varied")
    p.add_argument("--images", type=int, default=1000, help="test images that rank the units by their KL")
    args = p.parse_args(argv)
    if min(args.units, args.columns, args.images) < 1 or not args.span > 0 or args.image < 0:
        p.error("--units, --columns and --images must be >= 1, --span > 0 and --image >= 0")
    return args


def unit_kls(model, params, x):
    """The mean over the rows of x of each unit's marginal KL, float64 (d,)."""
    from gvae.models.corex.model import marginal_kls
    family = model.layers[0].family
    return np.asarray(marginal_kls(family, model.encode(params, x)), np.float64).mean(axis=0)


def traversals(model, params, x, units, values):
    """(len(units) * len(values), n_in) decoder means, float64: the mean code of x (1, n_in) with unit
    ``units[r]`` set to each of ``values`` in row r."""
    z = np.repeat(np.asarray(model.encode(params, x).mu), len(units) * len(values), axis=0)
    for r, unit in enumerate(units):
        z[r * len(values):(r + 1) * len(values), unit] = values
    return np.asarray(model.likelihood.mean(model.decode(params, z.astype(model.dtype)), params), np.float64)


def main(args):
    from gvae.io.mnist import load_mnist
    from gvae.plots.images import plot_image_grid
    from gvae.training.runs import load_model
    model, params, config = load_model(args.run)
    if len(model.layers) != 1:
        print(f"latent_traversals: {args.run} holds a hierarchy of {len(model.layers)} layers; this picture "
              "varies the units of one layer (examples/vlae_traversals.py varies a layer's code)", file=sys.stderr)
        return 2
    x = load_mnist()["test"][0].astype(model.dtype)
    if args.image >= len(x):
        print(f"latent_traversals: --image {args.image} is beyond the {len(x)} test images", file=sys.stderr)
        return 2
    kls = unit_kls(model, params, x[:args.images])
    units = np.argsort(-kls)[:args.units]
    values = np.linspace(-args.span, args.span, args.columns)
    images = traversals(model, params, x[args.image:args.image + 1], units, values)
    rows = ", ".join(f"z{u} {kls[u]:.2f}" for u in units)
    anchors = f", anchors {list(config.options.anchors)} at lambda {config.options.anchor_weight:g}" if config.options.anchors else ""
    path = plot_image_grid(images, args.out, f"{config.task} ({config.posterior}{anchors}): one unit varied per "
                           f"row over [-{args.span:g}, {args.span:g}]",
                           subtitle=f"rows: unit and its mean marginal KL (nats), {rows}", cols=args.columns)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

"""The ``gvae`` command line: ``gvae train`` (contract section 5)."""
import argparse
import sys

from . import __version__
from .kernels import ACTIVATIONS
from .likelihoods import LIKELIHOODS
from .posteriors import FAMILIES


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return v


def _non_negative_float(text):
    v = _positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    return v


def build_parser():
    parser = argparse.ArgumentParser(prog="gvae", description="VAEs with structured Gaussian posteriors.")
    parser.add_argument("--version", action="version", version=f"gvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model and write its run folder")
    t.add_argument("--posterior", default="diagonal", choices=sorted(FAMILIES), help="posterior family")
    t.add_argument("--grid-shape", type=_positive_int, nargs=2, default=None, metavar=("R", "C"),
                   help="lattice of the latent units for grid/extgrid (default: the most square R x C)")
    t.add_argument("--likelihood", default="bernoulli", choices=sorted(LIKELIHOODS), help="observation model")
    t.add_argument("--latent", type=_positive_int, default=16, metavar="D", help="latent dimension")
    t.add_argument("--hidden", type=_positive_int, nargs="+", default=[500, 500], metavar="H",
                   help="hidden layer widths of the encoder (the decoder mirrors them)")
    t.add_argument("--activation", default="elu", choices=sorted(set(ACTIVATIONS) - {"linear"}))
    t.add_argument("--epochs", type=_positive_int, default=10, metavar="E")
    t.add_argument("--batch-size", type=_positive_int, default=100, metavar="B")
    t.add_argument("--lr", type=_positive_float, default=1e-3, metavar="LR", help="Adam learning rate")
    t.add_argument("--clip-norm", type=_positive_float, default=None, metavar="C",
                   help="clip the global gradient norm to C")
    t.add_argument("--iw-samples", type=_positive_int, default=1, metavar="K",
                   help="importance samples per data point (K > 1: the IWAE bound)")
    t.add_argument("--samples", type=_positive_int, default=1, metavar="S",
                   help="Monte Carlo samples per data point for the ELBO")
    t.add_argument("--kl", choices=["analytic", "mc"], default="analytic",
                   help="KL term in closed form (SGVB-B) or by Monte Carlo (SGVB-A)")
    t.add_argument("--warmup", type=_non_negative_float, default=0.0, metavar="EPOCHS",
                   help="raise the KL weight linearly from 0 to 1 over this many epochs")
    t.add_argument("--seed", type=int, default=0, metavar="S")
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    t.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="use only the first N training images")
    t.add_argument("--max-bad-steps", type=_positive_int, default=20, metavar="N",
                   help="stop after N steps in a row with a non-finite loss or gradient")
    t.add_argument("--data", default=None, metavar="PATH",
                   help="an .npz (train_x, train_y, valid_x, ...) or a folder of MNIST IDX files; "
                        "default: MNIST from the cache ($GVAE_DATA), fetched on first use")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder to write")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    return parser


def _refuse_unavailable(args):
    """Flags of the contract whose feature this version does not have yet: refuse, do not ignore."""
    if args.iw_samples > 1:
        return "--iw-samples K > 1 (IWAE training) is not available in this version of gvae; use K = 1"
    if args.device == "cuda":
        return "--device cuda is not available in this version of gvae (CPU only); use --device cpu"
    return None


def cmd_train(args):
    from .data import load_mnist
    from .train import NonFiniteError, TrainConfig, train

    config = TrainConfig(posterior=args.posterior, grid_shape=args.grid_shape, latent=args.latent, hidden=tuple(args.hidden),
                         activation=args.activation, likelihood=args.likelihood, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, kl=args.kl, warmup=args.warmup,
                         samples=args.samples, seed=args.seed, limit=args.limit, clip_norm=args.clip_norm,
                         max_bad_steps=args.max_bad_steps, dtype=args.dtype)
    data = load_mnist(args.data)
    try:
        summary = train(config, data, args.out, quiet=args.quiet)
    except NonFiniteError as e:
        print(f"gvae: {e}", file=sys.stderr)
        return 3
    if not args.quiet:
        print(f"test ELBO {summary['test_elbo']:.3f} nats; run written to {args.out}")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _refuse_unavailable(args)
    if problem:
        parser.error(problem)
    try:
        return cmd_train(args)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as e:
        print(f"gvae: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

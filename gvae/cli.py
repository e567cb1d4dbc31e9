"""The ``gvae`` command line: ``gvae train``, ``gvae eval`` (contract section 5), ``gvae sample`` and
``gvae plot``."""
import argparse
import sys

import numpy as np

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
    t.add_argument("--psi", choices=["global", "decoder"], default="global",
                   help="gaussian: one learned variance per pixel, or per data point from the decoder")
    t.add_argument("--pixel-factor", choices=["decoder", "global"], default="decoder",
                   help="logitnormal*: the precision factor over pixels from the decoder, or one learned factor")
    t.add_argument("--squash", type=_positive_float, default=1e-6, metavar="LAMBDA",
                   help="continuous likelihoods: dequantised pixels are squashed into (LAMBDA, 1 - LAMBDA)")
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
    t.add_argument("--schedule", choices=["constant", "iwae"], default="constant",
                   help="learning rate: constant, or the IWAE paper's 3^i-epoch stages at lr 10^(-i/7)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (to --epochs in all)")

    e = sub.add_parser("eval", help="test ELBO, IWAE bounds and importance-sampled log p(x) of a run")
    e.add_argument("run", metavar="DIR", help="a run folder written by gvae train")
    e.add_argument("--iw-samples", type=_positive_int, default=5000, metavar="K",
                   help="importance samples per test image for log p(x)")
    e.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="first N test images only")
    e.add_argument("--per-example", default=None, metavar="FILE",
                   help="also write per-image values (elbo, log_likelihood, iwae_k) to FILE (.npz or .csv)")
    e.add_argument("--params", choices=["best", "last"], default="best",
                   help="the parameters of the best validation epoch or of the last epoch")
    e.add_argument("--batch-size", type=_positive_int, default=100, metavar="B")
    e.add_argument("--memory-mb", type=_positive_int, default=256, metavar="M",
                   help="bound on the memory of one decoder pass (samples are chunked to fit)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    e.add_argument("--data", default=None, metavar="PATH", help="as for gvae train")
    e.add_argument("--quiet", action="store_true")

    s = sub.add_parser("sample", help="decoder means and samples for z ~ N(0, I), saved as PNG grids")
    s.add_argument("run", metavar="DIR", help="a run folder written by gvae train")
    s.add_argument("--n", type=_positive_int, default=64, metavar="N", help="images per grid")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--params", choices=["best", "last"], default="best")
    s.add_argument("--out", default=None, metavar="PREFIX",
                   help="writes PREFIX_means.png and PREFIX_samples.png (default: DIR/samples)")

    pl = sub.add_parser("plot", help="pictures of a run (needs matplotlib: pip install 'gvae[plot]')")
    pl.add_argument("run", metavar="DIR", help="a run folder written by gvae train")
    pl.add_argument("--out", default=None, metavar="DIR", help="folder for the PNGs (default: the run folder)")
    pl.add_argument("--params", choices=["best", "last"], default="best")
    pl.add_argument("--data", default=None, metavar="PATH", help="as for gvae train")
    pl.add_argument("--seed", type=int, default=0)
    return parser


def _refuse_unavailable(args):
    """Flags of the contract whose feature this version does not have yet: refuse, do not ignore."""
    if getattr(args, "device", "cpu") == "cuda":
        return "--device cuda is not available in this version of gvae (CPU only); use --device cpu"
    return None


def cmd_train(args):
    from .data import load_mnist
    from .train import NonFiniteError, TrainConfig, Trainer

    data = load_mnist(args.data)
    if args.resume:
        trainer = Trainer.resume(args.out, data, quiet=args.quiet, epochs=args.epochs)
    else:
        config = TrainConfig(posterior=args.posterior, grid_shape=args.grid_shape, latent=args.latent,
                             hidden=tuple(args.hidden), activation=args.activation, likelihood=args.likelihood,
                             psi=args.psi, pixel_factor=args.pixel_factor, squash=args.squash,
                             epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, kl=args.kl,
                             warmup=args.warmup, samples=args.samples, iw_samples=args.iw_samples,
                             schedule=args.schedule, seed=args.seed, limit=args.limit,
                             clip_norm=args.clip_norm, max_bad_steps=args.max_bad_steps, dtype=args.dtype)
        trainer = Trainer(config, data, args.out, quiet=args.quiet)
    try:
        summary = trainer.fit()
    except NonFiniteError as e:
        print(f"gvae: {e}", file=sys.stderr)
        return 3
    if not args.quiet:
        print(f"test ELBO {summary['test_elbo']:.3f} nats; run written to {args.out}")
    return 0


def cmd_eval(args):
    import resource

    from .data import load_mnist
    from .evaluate import evaluate
    from .files import atomic_path, write_json
    from .train import bits_per_dim, fixed_eval_sets, load_model

    model, params, config = load_model(args.run, args.params)
    test_x = fixed_eval_sets(load_mnist(args.data), model)[1]
    if args.limit is not None:
        test_x = test_x[:args.limit]
    per, means, seconds = evaluate(model, params, test_x, args.iw_samples, seed=args.seed,
                                   batch_size=args.batch_size, memory_mb=args.memory_mb,
                                   progress=not args.quiet, kl=config.kl)
    result = {"test_elbo": means["elbo"], "test_log_likelihood": means["log_likelihood"],
              "iw_samples": args.iw_samples, "n_test": len(test_x), "params": args.params, "seconds": seconds,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              **{f"test_{k}": v for k, v in means.items() if k.startswith("iwae_")}}
    result.update(bits_per_dim(model, {"test_elbo": result["test_elbo"],
                                       "test_log_likelihood": result["test_log_likelihood"]}))
    write_json(f"{args.run}/eval.json", result)
    if args.per_example:
        path = args.per_example
        with atomic_path(path, suffix=".npz" if path.endswith(".npz") else ".csv") as tmp:
            if path.endswith(".npz"):
                with open(tmp, "wb") as f:
                    np.savez(f, **per)
            else:
                keys = sorted(per)
                np.savetxt(tmp, np.column_stack([per[k] for k in keys]), delimiter=",",
                           header=",".join(keys), comments="", fmt="%.6f")
    if not args.quiet:
        print(f"test ELBO {result['test_elbo']:.3f}  log p(x) ~ {result['test_log_likelihood']:.3f} nats "
              f"(K = {args.iw_samples}, {len(test_x)} images, {seconds:.1f} s)")
    return 0


def cmd_sample(args):
    from .images import tile, write_png
    from .train import load_model

    model, params, _ = load_model(args.run, args.params)
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, model.latent)).astype(model.dtype)
    out = model.decode(params, z)
    prefix = args.out or f"{args.run}/samples"
    written = []
    for kind, images in (("means", model.likelihood.mean(out, params)),
                         ("samples", model.likelihood.sample(out, params, rng))):
        path = f"{prefix}_{kind}.png"
        write_png(path, tile(np.clip(images, 0, 1)), scale=2)
        written.append(path)
    print("wrote " + ", ".join(written))
    return 0


def cmd_plot(args):
    from .data import load_mnist
    from .plots import plot_run

    paths = plot_run(args.run, load_mnist(args.data), out_dir=args.out, seed=args.seed, which=args.params)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "plot": cmd_plot}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _refuse_unavailable(args)
    if problem:
        parser.error(problem)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as e:
        print(f"gvae: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

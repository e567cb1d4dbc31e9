"""The ``gvae`` command line: ``gvae train``, ``gvae eval`` (docs/api.md, section 5), ``gvae sample`` and
``gvae plot``."""
import argparse
import dataclasses
import os
import sys

import numpy as np

from . import __version__
from .kernels import device_module, generator, to_device, to_host
from .training.config import TrainConfig, positive_int

DEVICES = ["cpu", "cuda"]
DEVICE_HELP = ("where the arrays live and the work is done: cpu (NumPy and Numba) or cuda (CuPy; pip install "
               '"gvae[cuda12]" or "gvae[cuda13]")')


def _flag_type(parse):
    """An argparse ``type`` from a config parser that raises ``ValueError`` with its message."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = parse.__name__
    return convert


_positive_int = _flag_type(positive_int)


def _add_config_flags(parser):
    """One ``--flag`` per :class:`TrainConfig` field, with its default, help and parser."""
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        parse = meta.pop("parse", None)
        if parse is not None:
            meta["type"] = _flag_type(parse)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=default, **meta)


def build_parser():
    parser = argparse.ArgumentParser(prog="gvae", description="VAEs with structured Gaussian posteriors.")
    defaults = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--version", action="version", version=f"gvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model and write its run folder", formatter_class=defaults)
    _add_config_flags(t)
    t.add_argument("--device", choices=DEVICES, default="cpu", help=DEVICE_HELP)
    t.add_argument("--data", default=None, metavar="PATH",
                   help="an .npz (train_x, train_y, valid_x, ...) or a folder of MNIST IDX files; "
                        "default: MNIST from the cache ($GVAE_DATA), fetched on first use")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder to write")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (to --epochs in all)")

    e = sub.add_parser("eval", help="test ELBO, IWAE bounds and importance-sampled log p(x) of a run",
                       formatter_class=defaults)
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
    e.add_argument("--device", choices=DEVICES, default="cpu", help=DEVICE_HELP)
    e.add_argument("--data", default=None, metavar="PATH", help="as for gvae train")
    e.add_argument("--quiet", action="store_true")

    s = sub.add_parser("sample", help="decoder means and samples for z ~ N(0, I), saved as PNG grids",
                       formatter_class=defaults)
    s.add_argument("run", metavar="DIR", help="a run folder written by gvae train")
    s.add_argument("--n", type=_positive_int, default=64, metavar="N", help="images per grid")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--params", choices=["best", "last"], default="best")
    s.add_argument("--device", choices=DEVICES, default="cpu", help=DEVICE_HELP)
    s.add_argument("--out", default=None, metavar="PREFIX",
                   help="writes PREFIX_means.png and PREFIX_samples.png (default: DIR/samples)")

    pl = sub.add_parser("plot", help="pictures of a run (needs matplotlib: pip install 'gvae[plot]')",
                        formatter_class=defaults)
    pl.add_argument("run", metavar="DIR", help="a run folder written by gvae train")
    pl.add_argument("--out", default=None, metavar="DIR", help="folder for the PNGs (default: the run folder)")
    pl.add_argument("--params", choices=["best", "last"], default="best")
    pl.add_argument("--data", default=None, metavar="PATH", help="as for gvae train")
    pl.add_argument("--seed", type=int, default=0)
    return parser


def cmd_train(args):
    from .io.mnist import load_mnist
    from .training import NonFiniteError, Trainer

    data = load_mnist(args.data)
    if args.resume:
        trainer = Trainer.resume(args.out, data, quiet=args.quiet, epochs=args.epochs, device=args.device)
    else:
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
        trainer = Trainer(config, data, args.out, quiet=args.quiet, device=args.device)
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

    from .io.mnist import load_mnist
    from .io.files import atomic_path, write_json
    from .training.evaluate import evaluate
    from .training.runs import bits_per_dim, fixed_eval_sets, load_model

    model, params, config = load_model(args.run, args.params, args.device)
    test_x = fixed_eval_sets(load_mnist(args.data), model)[1]
    if args.limit is not None:
        test_x = test_x[:args.limit]
    test_x = to_device(test_x, args.device)
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
    from .io.images import tile, write_png
    from .training.runs import load_model

    model, params, _ = load_model(args.run, args.params, args.device)
    rng = generator(args.device, args.seed)
    z = rng.standard_normal((args.n, model.latent), dtype=model.dtype)
    out = model.decode(params, z)
    prefix = args.out or f"{args.run}/samples"
    written = []
    for kind, images in (("means", model.likelihood.mean(out, params)),
                         ("samples", model.likelihood.sample(out, params, rng))):
        path = f"{prefix}_{kind}.png"
        write_png(path, tile(np.clip(to_host(images), 0, 1)), scale=2)
        written.append(path)
    print("wrote " + ", ".join(written))
    return 0


def cmd_plot(args):
    from .io.mnist import load_mnist
    from .plots import plot_run

    paths = plot_run(args.run, load_mnist(args.data), out_dir=args.out, seed=args.seed, which=args.params)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "plot": cmd_plot}


def main(argv=None):
    # Idle OpenMP threads (Numba's parallel kernels) sleep instead of spinning: on a 2-core machine a
    # spinning thread holds the core an OpenBLAS thread needs, and a 60 us call was seen to take a
    # scheduler tick (8 ms). Set here, in gvae's own process, before any kernel starts a thread pool (a
    # library user sets it themselves, see the README); a value already set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "device"):
            device_module(args.device)  # an unavailable device is refused before any work is done
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as e:
        print(f"gvae: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The commands of ``gvae``: ``gvae train``, ``gvae eval`` (docs/reference/api.md, section 5), ``gvae sample``,
``gvae plot``, ``gvae analyze``, ``gvae plans`` (and ``gvae sweep`` and ``gvae table`` from
:mod:`gvae.sweep.commands`), and their parser (the train flags built from :class:`TrainConfig`).
:mod:`gvae.cli` sets the process up (:mod:`gvae.process`) and calls :func:`run`."""
import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from . import __version__
from .io.arguments import ArgumentParser, DefaultsHelpFormatter
from .process import THREAD_VARIABLES
from .kernels import (clear_plans, device_module, device_names, kept_plans, plan_file, plans_folder, report_compilations,
                      to_device, to_host, tuning_active)
from .sweep import commands as sweep_commands
from . import models  # noqa: F401  (registers the literature models' tasks: their flags, runs and names)
from .training.config import RESUMABLE, TrainConfig, non_negative_int, positive_int, setting_fields

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


class _ConfigFlag(argparse.Action):
    """Stores a TrainConfig flag's value and records its field name in ``namespace.given_config``: which
    settings the command line gave, known from the one parse of argv (a resumed run may change only some)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given_config = (*getattr(namespace, "given_config", ()), self.dest)


def _add_config_flags(parser):
    """One ``--flag`` per setting (:func:`gvae.training.config.setting_fields`: TrainConfig's fields, then
    each registered task's options), with its default, help and parser."""
    for f in setting_fields().values():
        meta = dict(f.metadata)
        parse = meta.pop("parse", None)
        if parse is not None:
            meta["type"] = _flag_type(parse)
        if callable(meta["help"]):  # the task's: the registered tasks, read when the parser is built
            meta["help"] = meta["help"]()
        if "choices" in meta:
            meta["choices"] = list(meta["choices"])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        aliases = ["--" + a for a in meta.pop("aliases", ())]
        parser.add_argument("--" + f.name.replace("_", "-"), *aliases, dest=f.name, default=default,
                            action=_ConfigFlag, **meta)
    parser.set_defaults(given_config=())


def _add_run_flags(parser, threads, seed_help, data=True):
    """The flags of a command that opens a run folder, declared once for all of them: DIR, --threads,
    --params, --seed (``seed_help`` says what it seeds) and --device, and --data where the command takes
    it."""
    parser.add_argument("run", metavar="DIR", help="a run folder written by gvae train")
    parser.add_argument("--threads", **threads)
    parser.add_argument("--params", choices=["best", "last"], default="best",
                        help="the parameters of the best validation epoch or of the last epoch")
    parser.add_argument("--seed", type=_flag_type(non_negative_int), default=0, metavar="S", help=seed_help)
    parser.add_argument("--device", choices=device_names(), default="cpu", help=DEVICE_HELP)
    if data:
        parser.add_argument("--data", default=None, metavar="PATH",
                            help="as for gvae train (default: MNIST from the cache)")


def build_parser():
    parser = ArgumentParser(prog="gvae", description="VAEs with structured Gaussian posteriors.")
    defaults = DefaultsHelpFormatter
    parser.add_argument("--version", action="version", version=f"gvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    threads = dict(type=_positive_int, default=None, metavar="N",
                   help="threads for gvae's kernels and products (OpenBLAS runs on one) and OpenMP "
                        "(sets " + ", ".join(THREAD_VARIABLES) + " in this process; default: one per core gvae "
                        "may use, and the others as the environment says)")

    t = sub.add_parser("train", help="train one model and write its run folder", formatter_class=defaults)
    _add_config_flags(t)
    t.add_argument("--threads", **threads)
    t.add_argument("--device", choices=device_names(), default="cpu", help=DEVICE_HELP)
    t.add_argument("--data", default=None, metavar="PATH",
                   help="an .npz (train_x, train_y, valid_x, ...) or a folder of MNIST IDX files; "
                        "default: MNIST from the cache ($GVAE_DATA), fetched on first use")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="run folder to write (a new one, unless --resume or --overwrite)")
    t.add_argument("--quiet", action="store_true",
                   help="the result line only: no progress bar and no line per epoch (a log needs no --quiet: "
                        "without a terminal there is no bar, and one line per epoch)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its own configuration; only " + ", ".join(
                       "--" + name.replace("_", "-") for name in RESUMABLE) + " may change")
    t.add_argument("--overwrite", action="store_true", help="replace the run that --out holds")

    e = sub.add_parser("eval", help="test ELBO, IWAE bounds and importance-sampled log p(x) of a run (an "
                       "interrupted evaluation goes on where it stopped)",
                       formatter_class=defaults)
    _add_run_flags(e, threads, seed_help="seed of the importance samples")
    e.add_argument("--iw-samples", type=_positive_int, default=5000, metavar="K",
                   help="importance samples per test image for log p(x)")
    e.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="first N test images only (default: all)")
    e.add_argument("--per-example", default=None, metavar="FILE",
                   help="also write per-image values (elbo, log_likelihood, iwae_k) to FILE (.npz or .csv; "
                        "default: no such file)")
    e.add_argument("--batch-size", type=_positive_int, default=100, metavar="B", help="test images per pass")
    e.add_argument("--memory-mb", type=_positive_int, default=256, metavar="M",
                   help="bound on the memory of one decoder pass, in MiB (samples are chunked to fit)")
    e.add_argument("--quiet", action="store_true",
                   help="no progress (a bar on a terminal, a line per tenth of the work in a log) and no result line")

    s = sub.add_parser("sample", help="decoder means and samples for z ~ N(0, I) (a hierarchy: drawn from the "
                       "top layer down), saved as PNG grids",
                       formatter_class=defaults)
    _add_run_flags(s, threads, seed_help="seed of z (the same z as gvae plot's decoder_means.png) and of the samples",
                   data=False)
    s.add_argument("--n", type=_positive_int, default=64, metavar="N", help="images per grid")
    s.add_argument("--out", default=None, metavar="PREFIX",
                   help="writes PREFIX_means.png and PREFIX_samples.png (default: DIR/decoder)")
    s.add_argument("--quiet", action="store_true", help="no line naming the files written")

    a = sub.add_parser("analyze", help="active units, rate and distortion, and the inference gaps of a run "
                       "(docs/howto/analysis.md)", formatter_class=defaults)
    _add_run_flags(a, threads, seed_help="seed of the points drawn and of all noise")
    a.add_argument("--points", type=_positive_int, default=100, metavar="N",
                   help="test images (drawn with --seed) whose posteriors are refined for the inference gaps")
    a.add_argument("--iw-samples", type=_positive_int, default=1000, metavar="K",
                   help="samples from each of the amortised and the refined posterior per point (log p(x) "
                        "from all 2K, ELBOs from each one's own K)")
    a.add_argument("--refine-steps", type=_positive_int, default=2000, metavar="N",
                   help="most Adam steps of the refinement (it stops earlier when the held-out ELBO levels off)")
    a.add_argument("--surgery-points", type=_positive_int, default=1000, metavar="N",
                   help="test images (drawn with --seed) whose aggregate posterior the ELBO surgery measures "
                        "(time grows as N^2)")
    a.add_argument("--surgery-samples", type=_positive_int, default=10, metavar="S",
                   help="samples of z per image for the ELBO surgery's mutual information")
    a.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="first N test images only (active units and rate/distortion; the points are drawn from "
                        "them; default: all)")
    a.add_argument("--quiet", action="store_true", help="no progress bar and no result lines")

    pl = sub.add_parser("plot", help="pictures of a run (needs matplotlib: pip install 'gvae[plot]')",
                        formatter_class=defaults)
    _add_run_flags(pl, threads, seed_help="seed of the z of decoder_means.png (the same z as gvae sample --seed S)")
    pl.add_argument("--out", default=None, metavar="DIR", help="folder for the PNGs (default: the run folder)")
    pl.add_argument("--quiet", action="store_true", help="no line naming the files written")
    pn = sub.add_parser("plans", help="this machine's measured plans of gvae's products on several threads "
                        "(gvae.kernels.cpu.tuning): the file that keeps them and what it holds",
                        formatter_class=defaults)
    pn.add_argument("--clear", action="store_true",
                    help="remove the kept plans (of every machine); the next runs measure them again")
    sweep_commands.add_parsers(sub, defaults, _positive_int)
    return parser


def cmd_train(args):
    from .io.mnist import load_mnist
    from .training import Trainer, TrainingStopped, rundir
    from .training.runfiles import resume_conflicts

    rundir.check(args.out, args.resume, args.overwrite)  # before the data are loaded
    given = {name: getattr(args, name) for name in args.given_config}  # the settings the command line gave
    if args.resume:
        conflicts = resume_conflicts(args.out, given)
        if conflicts:
            listed = "; ".join(f"--{name.replace('_', '-')} {value} (the run's: {run})" for name, value, run in conflicts)
            raise ValueError(f"--resume continues {args.out} with its own configuration, but these flags differ "
                             f"from it: {listed}. Only " + ", ".join("--" + n.replace("_", "-") for n in RESUMABLE)
                             + " may change on resume; start a new run (another --out) for the rest")
    # A new run's configuration is checked before the data are loaded (or fetched).
    config = None if args.resume else TrainConfig.of(**{name: getattr(args, name) for name in setting_fields()})
    data = load_mnist(args.data)
    if args.resume:
        trainer = Trainer.resume(args.out, data, quiet=args.quiet, device=args.device,
                                 **{k: v for k, v in given.items() if k in RESUMABLE})
    else:
        trainer = Trainer(config, data, args.out, quiet=args.quiet, device=args.device, overwrite=args.overwrite)
    try:
        summary = trainer.fit()
    except TrainingStopped as e:
        print(f"gvae: {e}", file=sys.stderr)
        return 3
    report_compilations()
    print(f"{trainer.task.report.result_line(summary)}; run written to {args.out}")  # --quiet too: the result
    return 0


def cmd_eval(args):
    from .training import rundir
    from .training.runs import open_run

    per_example = _per_example_path(args.per_example)  # checked before any work, not after eval.json
    # Under the run folder's lock from before the model is read: no other process replaces the run (gvae
    # train --overwrite) while this one evaluates it, nor writes its results.
    with rundir.folder_lock(rundir.existing_run(args.run), command="gvae eval", advice="wait for it to end") as run:
        opened = open_run(run, args.params, args.device, weighted=True)
        # The importance sampling's progress, so that an interrupted evaluation goes on where it stopped.
        partial = run / rundir.EVAL_PARTIAL.format(k=args.iw_samples)
        rundir.refuse_folders(run, ["eval.json", f"eval_k{args.iw_samples}.json", partial.name])
        return _evaluate_run(args, opened, per_example, partial)


def _evaluate_run(args, opened, per_example, partial):
    """gvae eval's work on the run ``opened`` (:func:`open_run`), under the run folder's lock."""
    import resource

    from .io.files import atomic_path, remove_stale_temporaries, write_json
    from .io.mnist import load_mnist
    from .evaluation.evaluate import evaluate
    from .evaluation.task_weights import TaskWeights
    from .training.validation import bits_per_dim
    from .training.memory import check_importance_sampling

    data = load_mnist(args.data)
    read = _evaluated_data(args, opened, data)
    opened = opened.with_test_set(data, args.limit)
    run, model, params, config, test_x = opened.run_dir, opened.model, opened.params, opened.config, opened.test_x
    check_importance_sampling(model, args.batch_size, args.iw_samples, args.memory_mb * 2 ** 20, len(test_x))
    test_x = to_device(test_x, args.device)
    remove_stale_temporaries(run, partial.name)
    source = model if opened.task is None else TaskWeights(opened.task.reading)
    per, means, seconds = evaluate(source, params, test_x, args.iw_samples, seed=args.seed,
                                   batch_size=args.batch_size, memory_mb=args.memory_mb,
                                   progress=not args.quiet, kl=config.kl, partial=partial)
    result = {"test_elbo": means["elbo"], "test_log_likelihood": means["log_likelihood"],
              "iw_samples": args.iw_samples, "n_test": len(test_x), "params": args.params, "seconds": seconds,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **read,
              **{f"test_{k}": v for k, v in means.items() if k.startswith("iwae_")}}
    nats = {"test_elbo": result["test_elbo"], "test_log_likelihood": result["test_log_likelihood"]}
    result.update(bits_per_dim(model, nats) if opened.task is None else opened.task.reading.bits_per_dim(nats))
    previous = run / "eval.json"
    if previous.is_file():  # an evaluation by an older gvae, with another K, is kept under its own name
        try:
            k_old = json.loads(previous.read_text()).get("iw_samples")
        except (ValueError, OSError):
            k_old = None
        if isinstance(k_old, int) and k_old != args.iw_samples and not (run / f"eval_k{k_old}.json").exists():
            write_json(run / f"eval_k{k_old}.json", json.loads(previous.read_text()))
    write_json(run / f"eval_k{args.iw_samples}.json", result)
    write_json(previous, result)
    if per_example:
        path = str(per_example)
        with atomic_path(path, suffix=per_example.suffix) as tmp:
            if path.endswith(".npz"):
                with open(tmp, "wb") as f:
                    np.savez(f, **per)
            else:
                keys = sorted(per)
                np.savetxt(tmp, np.column_stack([per[k] for k in keys]), delimiter=",",
                           header=",".join(keys), comments="", fmt="%.6f")
    partial.unlink(missing_ok=True)  # the result is stored: the progress is no longer needed
    if not args.quiet:
        report_compilations()
        row = "image" if opened.task is None else opened.task.reading.row_name
        bounds = "  ".join(f"L_{k} {result[f'test_iwae_{k}']:.3f}" for k in (1, 5, 50) if f"test_iwae_{k}" in result)
        print(f"test ELBO {result['test_elbo']:.3f} (one draw of z per {row}, seed {args.seed})  "
              f"{bounds + '  ' if bounds else ''}log p(x) ~ {result['test_log_likelihood']:.3f} (L_{args.iw_samples}: "
              f"{args.iw_samples:,} importance samples) nats per {row}; {len(test_x):,} test {row}s, the {args.params} "
              f"epoch's parameters, {seconds:.1f} s; written to {previous} and {run / f'eval_k{args.iw_samples}.json'}")
    return 0


def _evaluated_data(args, opened, data):
    """What eval.json records of the data read (``data``, from --data or MNIST): ``data`` (the path, or
    "mnist"), ``data_sha256`` (its fingerprint as the run's checkpoint records the run's own) and
    ``data_is_the_runs`` (None for a run that recorded none). A run trained on other data than MNIST is
    refused without --data (its numbers on MNIST would pass for its own); given --data of other data, a
    warning says so, since evaluating on another data set may be what is wanted."""
    from .training.tasks import task_class
    from .training.trainer import data_fingerprint, run_inputs

    task = opened.task or task_class(opened.config.task)(opened.config, opened.model, "cpu")
    given = data_fingerprint(run_inputs(task, data))
    same = None if opened.data_sha256 is None else given == opened.data_sha256
    named = "MNIST" if args.data is None else args.data
    if same is False:
        hashes = f"data SHA-256 {opened.data_sha256[:16]}... against {given[:16]}..."
        if args.data is None:
            raise ValueError(f"{opened.run_dir} was trained on other data than MNIST ({hashes}): give the data it "
                             "was trained on with --data PATH")
        print(f"gvae: warning: {opened.run_dir} was trained on other data than {named} ({hashes}); evaluating it "
              f"on the test images of {named}", file=sys.stderr)
    return {"data": "mnist" if args.data is None else str(Path(args.data).absolute()), "data_sha256": given,
            "data_is_the_runs": same}


def _per_example_path(text):
    """The --per-example file as a Path, checked: a .npz or .csv file in an existing folder."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"--per-example {text} is a folder; expected a file name ending in .npz or .csv")
    if path.suffix not in (".npz", ".csv"):
        raise ValueError(f"--per-example {text}: expected a file name ending in .npz or .csv")
    if not path.parent.is_dir():
        raise ValueError(f"--per-example {text}: the folder {path.parent} does not exist")
    return path


def cmd_sample(args):
    """gvae sample, under the run folder's lock when it writes there (as it does by default)."""
    from .training import rundir
    with rundir.lock_to_write(args.run, Path(_sample_prefix(args)).parent, "gvae sample"):
        return _sample(args)


def _sample_prefix(args):
    """gvae sample's --out: PREFIX of PREFIX_means.png and PREFIX_samples.png (default DIR/decoder)."""
    return args.out or f"{args.run}/decoder"


def _sample(args):
    from .io.files import check_writable
    from .io.images import tile, write_png
    from .training.memory import check_sampling
    from .training.runs import open_run, prior_draws
    from .training.validation import standard_normal

    prefix = _sample_prefix(args)
    check_writable(Path(prefix).parent, "the pictures (--out)")
    run = open_run(args.run, args.params, args.device, sampled=True)
    model, params, config, task = run.model, run.params, run.config, run.task  # task: a task model's run
    check_sampling(model, args.n)
    noise = standard_normal if task is None else task.reading.noise  # a task's own: uniforms for binary units
    out, rng = prior_draws(model, params, args.n, args.seed, args.device, noise)  # gvae plot's decoder_means.png z
    titled = _can_draw()  # without matplotlib: plain grids, without titles
    if titled:
        from .plots.images import plot_image_grid, prior_draws_title
        from .plots.titles import run_title
        subtitle = (run_title(config, args.run) if task is None
                    else run_title(config, args.run, task.settings.posterior_family, model.likelihood.name))
    kinds = {"means": (model.likelihood.mean(out, params), "Decoder means"),
             "samples": (model.likelihood.sample(out, params, rng), "Samples x ~ p(x|z)")}
    written = []
    for kind, (images, what) in kinds.items():
        path = f"{prefix}_{kind}.png"
        images = np.clip(to_host(images), 0, 1)
        if titled:
            plot_image_grid(images, path, prior_draws_title(model, what, args.n, args.params), subtitle)
        else:
            write_png(path, tile(images), scale=2)
        written.append(path)
    if not args.quiet:
        report_compilations()
        print("wrote " + ", ".join(written) + ("" if titled else " (untitled: pip install 'gvae[plot]' for titles)"))
    return 0


def cmd_plot(args):
    """gvae plot, under the run folder's lock when it writes there (as it does by default)."""
    from .training import rundir
    with rundir.lock_to_write(args.run, args.out or args.run, "gvae plot"):
        return _plot(args)


def _plot(args):
    from .io.files import check_writable
    from .plots.canvas import require
    from .plots.run import plot_run
    from .training.runs import open_run

    check_writable(args.out or args.run, "the pictures (--out)")
    require()  # fail early and clearly, before the run is read
    run = open_run(args.run, args.params, args.device).with_test_set(args.data)
    paths = plot_run(run, out_dir=args.out, seed=args.seed)
    if not args.quiet:
        report_compilations()
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_analyze(args):
    """gvae analyze, under the run folder's lock (it writes analysis.json and its pictures there)."""
    from .training import rundir
    with rundir.folder_lock(rundir.existing_run(args.run), command="gvae analyze", advice="wait for it to end"):
        return _analyze(args)


def _analyze(args):
    from .io.files import check_writable, write_json
    from .evaluation.analysis import analyze_run, describe_surgery

    check_writable(args.run, "analysis.json")  # before the work, which takes minutes
    result = analyze_run(args.run, args.data, which=args.params, limit=args.limit,
                         points=args.points, iw_samples=args.iw_samples, refine_steps=args.refine_steps,
                         seed=args.seed, surgery_points=args.surgery_points, surgery_samples=args.surgery_samples,
                         device=args.device, progress=not args.quiet)
    run = Path(args.run)
    if not _can_draw():
        result.update(pictures=[], pictures_note="no pictures: pip install 'gvae[plot]' (matplotlib)")
    else:
        from .plots.analysis import plot_analysis
        result["pictures"] = [p.name for p in plot_analysis(result, run)]
    write_json(run / "analysis.json", result)
    if not args.quiet:
        report_compilations()
        gaps = result["gaps"]
        active = ", ".join(f"{layer['active_units']} of {layer['latent']}" for layer in result["layers"])
        print(f"active units {active}; rate {result['rate']:.2f}, distortion {result['distortion']:.2f}, ELBO "
              f"{result['elbo']:.2f} nats on {result['n_test']:,} test images (distortion from "
              f"{result['rd_samples']} draws of z per image)")
        if gaps is None:
            print(f"no inference gaps: {result['gaps_note']}")
        else:
            if "points_note" in gaps:
                print(f"inference gaps: {gaps['points_note']}")
            print(f"{gaps['points']} points: log p(x) {gaps['log_likelihood']:.2f} (L_{2 * args.iw_samples}), ELBO "
                  f"refined {gaps['elbo_refined']:.2f}, amortised {gaps['elbo_amortised']:.2f} ({args.iw_samples:,} "
                  f"draws of z each); approximation gap "
                  f"{gaps['approximation_gap']:.2f}, amortisation gap {gaps['amortisation_gap']:.2f} nats")
        for layer in result["layers"]:
            if layer["surgery"] is not None:
                print(describe_surgery(layer, len(result["layers"])))
        if "surgery_note" in result:
            print(result["surgery_note"])
        print(f"written to {run / 'analysis.json'}" + "".join(f", {run / name}" for name in result["pictures"])
              + (f" ({result['pictures_note']})" if "pictures_note" in result else ""))
    return 0


def _can_draw():
    """Whether matplotlib is there to draw the pictures (:func:`gvae.plots.canvas.available`)."""
    from .plots.canvas import available
    return available()


def cmd_plans(args):
    if args.clear:
        removed = clear_plans()
        print(f"removed {len(removed)} plan file(s) from {plans_folder()}" + "".join(f"\n  {n}" for n in removed))
        return 0
    path = plan_file()
    state = "on" if tuning_active() else "off (GVAE_TUNING, or no writable folder: each product follows its rule)"
    print(f"tuning: {state}\nplans of this machine: {path}" + ("" if path.exists() else " (none yet)"))
    for name, choice in sorted(kept_plans().items()):
        print(f"  {name}: {choice}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "plot": cmd_plot, "analyze": cmd_analyze,
            "plans": cmd_plans, **sweep_commands.COMMANDS}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit, ``docker stop``) taken as Ctrl-C is: the command
    stops with what it had finished on disk and says how to go on."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_stops_cleanly():
    """Within it, SIGTERM raises :class:`Terminated` in the main thread (its default would end the process
    at once: no lock released, no Dask cluster closed, no word to the user); the handler before it is put
    back after. Outside the main thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(argv):
    """Parse ``argv`` (the arguments after ``gvae``) and run the command; returns the exit status (0; 2 for
    bad input; 130 after Ctrl-C, 143 after SIGTERM, each with a hint how to go on)."""
    args = build_parser().parse_args(list(argv))
    with sigterm_stops_cleanly():
        return _run(args)


def _run(args):
    try:
        if hasattr(args, "device"):
            device_module(args.device)  # an unavailable device is refused before any work is done
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as e:
        print(f"gvae: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # what the machine refused (a full disk, a read-only folder, a folder named like a file)
        where = f" ({e.filename})" if e.filename else ""
        print(f"gvae: error: {e.strerror or e}{where}; what was written before stays as it was"
              + _resume_hint(args), file=sys.stderr)
        return 1
    except SystemError as e:
        # Ctrl-C or SIGTERM that arrived while C code ran Python (Numba loading a cached kernel): the
        # interpreter wraps the handler's exception in a SystemError; it is the same stop.
        stop = _interruption(e)
        if stop is None:
            raise
        return _stopped(args, stop)
    except KeyboardInterrupt as e:
        return _stopped(args, e)


def _interruption(error):
    """The KeyboardInterrupt (or :class:`Terminated`) among the causes of ``error``, or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _stopped(args, e):
    """What a stop by Ctrl-C or SIGTERM (``e``) prints, and its exit status (130 or 143)."""
    terminated = isinstance(e, Terminated)
    hint = _resume_hint(args)
    if args.command == "eval" and not hint:  # stopped before its first batch ended, or no progress file
        hint = (f"; nothing was kept (an evaluation keeps its progress once a batch of {args.batch_size} images "
                "is done), so the same gvae eval command starts over")
    print(f"\ngvae: {'stopped by SIGTERM' if terminated else 'interrupted'}{hint}", file=sys.stderr)
    return 143 if terminated else 130


def _resume_hint(args):
    """How to go on after a stop (an interruption or a refused write), as "; ..." (empty: nothing to go on from)."""
    from .training import rundir
    if args.command == "train" and (Path(args.out) / "checkpoint.npz").is_file():
        return f"; the run resumes from its last finished epoch: gvae train --resume --out {args.out}"
    if args.command == "train" and rundir.resume_refusal(Path(args.out)) is None:  # its config.json alone
        return f"; no epoch had finished: gvae train --resume --out {args.out} starts the run over with its configuration"
    if args.command == "eval" and (Path(args.run) / rundir.EVAL_PARTIAL.format(k=args.iw_samples)).is_file():
        return "; the same gvae eval command goes on from the images it finished"
    if args.command == "sweep":
        return "; the same gvae sweep command goes on from where the sweep stopped"
    return ""

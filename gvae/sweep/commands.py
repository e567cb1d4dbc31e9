"""``gvae sweep SPEC`` and ``gvae table SWEEP_DIR``: their parsers (added to gvae's by
:func:`add_parsers`) and what they run."""
import sys


def add_parsers(sub, formatter_class, positive_int):
    """Add the sweep and table commands to the sub-parsers ``sub`` of gvae's parser (``positive_int``:
    its argparse type of a positive integer)."""
    s = sub.add_parser("sweep", formatter_class=formatter_class,
                       help="train and evaluate a grid of configurations x seeds on Dask (a TOML spec; "
                            "docs/howto/sweeps.md); resumable: run it again to go on")
    s.add_argument("spec", metavar="SPEC", help="the sweep's TOML file")
    s.add_argument("--out", default=None, metavar="DIR",
                   help="the sweep folder (default: the spec's [sweep] out, relative to the spec's folder)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on this Dask cluster (an address such as tcp://host:8786, or a scheduler file; "
                        "default: a local cluster); its workers must see the sweep folder and have gvae")
    s.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes of the local cluster, each running one run at a time (default: cores // "
                        "the spec's threads)")
    s.add_argument("--overwrite", action="store_true",
                   help="train again from their start the runs that the spec describes differently from "
                        "what their folders hold (without it, such a spec is refused)")

    t = sub.add_parser("table", formatter_class=formatter_class,
                       help="aggregate a sweep over seeds: writes table.json and table.md (and curves.png, "
                            "with matplotlib) into SWEEP_DIR and prints the Markdown")
    t.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a folder written by gvae sweep")


def cmd_sweep(args):
    from .execute import run_sweep
    return run_sweep(args.spec, out=args.out, scheduler=args.scheduler, workers=args.workers,
                     overwrite=args.overwrite)


def cmd_table(args):
    from .table import write_curves, write_table
    _, text = write_table(args.sweep_dir)
    sys.stdout.write(text)
    picture = write_curves(args.sweep_dir)
    if picture is not None:
        print(f"wrote {picture}")
    return 0


COMMANDS = {"sweep": cmd_sweep, "table": cmd_table}

"""VCCA and VCCA-private trained as Wang et al.'s released code trains them (docs/models/vcca.md, "The
authors' protocol"), one run after another, each started, or resumed where it stopped.

    python examples/vcca_authors_protocol.py OUT QUEUE [--core C [C ...]] [--epochs 250] [--data FILE]

QUEUE is ``vcca`` (VCCA seeds 0 and 1, then the same with ``--posterior chain``), ``private``
(VCCA-private, ``--private 30``, seeds 0 and 1, then VCCA with ``--posterior extgrid --grid-shape 5 8``),
or run names such as ``vcca-s0 vccap-s1 vcca-chain-s0 vcca-extgrid-s1``. Each run is the folder OUT/NAME
and its output goes to OUT/NAME.log; a run with a summary is done and skipped. The runs of a queue are
pinned to the cores given and use one thread a core: on a 2-core machine either two queues side by side
(``--core 0`` and ``--core 1``), or one queue on both (``--core 0 1``), which finishes its first run
sooner. A run of 250 epochs takes hours; docs/notes/2026-11-vcca.md has the epoch times measured on each
machine.
The summary of each run has the one-vs-one SVM's test error (``svm_ovo_test_error``), the paper's 3.0%
(VCCA) and 2.4% (VCCA-private).
"""
import os
import subprocess
import sys
from pathlib import Path

from gvae.io.arguments import ArgumentParser

PROTOCOL = ["--task", "vcca", "--latent", "40", "--hidden", "1024", "1024", "1024", "--activation", "relu",
            "--init", "uniform-0.05", "--dropout", "0.2", "--input-dropout", "0.2", "--code-dropout", "0.2",
            "--samples", "5", "--decoder-draws", "own", "--view2-likelihood", "pixel-gaussian",
            "--view2-mean", "sigmoid", "--lr", "1e-4", "--batch-size", "100", "--test-params", "last"]
SYSTEMS = {"vcca": [], "vccap": ["--private", "30"], "vcca-chain": ["--posterior", "chain"],
           "vcca-extgrid": ["--posterior", "extgrid", "--grid-shape", "5", "8"]}
QUEUES = {"vcca": ["vcca-s0", "vcca-s1", "vcca-chain-s0", "vcca-chain-s1"],
          "private": ["vccap-s0", "vccap-s1", "vcca-extgrid-s0", "vcca-extgrid-s1"]}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", metavar="OUT", help="the folder of the runs (made if missing)")
    p.add_argument("queue", nargs="+", metavar="QUEUE", help="vcca, private, or run names (SYSTEM-sSEED)")
    p.add_argument("--core", type=int, nargs="+", default=None, metavar="C",
                   help="pin the runs to these cores, one thread a core (default: not pinned, one thread)")
    p.add_argument("--epochs", type=int, default=250, help="the protocol's 250; fewer for a trial")
    p.add_argument("--data", default=None, help="as for gvae train (default: MNIST from the cache)")
    args = p.parse_args(argv)
    names = [name for item in args.queue for name in QUEUES.get(item, [item])]
    for name in names:
        system, _, seed = name.rpartition("-s")
        if system not in SYSTEMS or not seed.isdigit():
            p.error(f"{name!r} is not a queue ({', '.join(QUEUES)}) or a run name SYSTEM-sSEED with SYSTEM one "
                    f"of {', '.join(SYSTEMS)}")
    if args.core is not None and not hasattr(os, "sched_setaffinity"):
        p.error("--core pins a process to a core through os.sched_setaffinity, which this system lacks")
    if args.core is not None:
        unknown = sorted(set(args.core) - os.sched_getaffinity(0))
        if unknown:
            p.error(f"--core {' '.join(map(str, unknown))}: not among this process's cores "
                    f"{sorted(os.sched_getaffinity(0))}")
        if len(set(args.core)) != len(args.core):
            p.error(f"--core names a core twice ({' '.join(map(str, args.core))}); give each core once")
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1, got {args.epochs}")
    args.names = names
    return args


def command(name, folder, epochs, data, threads=1):
    """The gvae train arguments that start the run ``name`` in ``folder``, or resume it where it has a
    checkpoint, on ``threads`` threads."""
    data = ["--data", data] if data else []
    common = ["--epochs", str(epochs), "--threads", str(threads), "--out", str(folder), *data]
    if (folder / "checkpoint.npz").is_file():
        return ["train", "--resume", *common]
    system, _, seed = name.rpartition("-s")
    return ["train", *PROTOCOL, *SYSTEMS[system], "--seed", seed, *common]


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cores = set(args.core) if args.core is not None else None
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    threads = len(cores) if cores else 1
    for name in args.names:
        folder = out / name
        if (folder / "summary.json").is_file():
            print(f"{name}: done")
            continue
        words = command(name, folder, args.epochs, args.data, threads)
        print(f"{name}: gvae {' '.join(words)}", flush=True)
        with open(out / f"{name}.log", "a") as log:
            code = subprocess.run([sys.executable, "-m", "gvae", *words], stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=pin).returncode
        if code:
            print(f"{name}: gvae train ended with exit status {code} ({out / name}.log says why)", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

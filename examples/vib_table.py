"""The deep variational information bottleneck's table (Alemi et al. 2017, permutation-invariant MNIST):
test error and rate of each posterior family at each beta, mean and standard deviation over seeds.

    python examples/vib_table.py --out ../runs/vib-table                 # train what is missing, then the table
    python examples/vib_table.py --out ../runs/vib-table --table-only    # the table of what is trained

Every run is ``gvae train --task classify`` with the paper's model and optimiser: a 784-1024-1024 ReLU
encoder, K = 256 latent units, batch 100, Adam at lr 1e-4 with beta1 = 0.5, the rate decayed by 0.97 every
2 epochs, Polyak averaging with decay 0.999, 200 epochs (``--epochs`` to change the budget; the table
states it). Runs live in ``OUT/FAMILY/beta-B/seed-S``; one that has a checkpoint is resumed to ``--epochs``,
one whose summary already covers them is kept, so the command may be stopped (Ctrl-C) and given again.
``--jobs N`` trains N runs at a time (each on ``--threads``). Writes ``OUT/table.md`` and ``OUT/table.json``;
runs not yet trained are listed as missing, never dropped silently.
"""
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gvae.io.arguments import ArgumentParser
from gvae.io.files import atomic_path, write_json
from gvae.sweep.table import mean_std

FAMILIES = ("diagonal", "chain", "grid", "extgrid")
BETAS = (1e-4, 1e-3, 1e-2)
PAPER_ERROR = 1.13  # percent, the paper's diagonal model at beta = 1e-3
# The paper's model and optimiser; the lattice families put K = 256 units on a 16 x 16 grid.
TRAIN = ["--task", "classify", "--activation", "relu", "--batch-size", "100", "--lr", "1e-4", "--lr-decay", "0.97",
         "--lr-decay-epochs", "2", "--adam-beta1", "0.5", "--polyak", "0.999"]


def run_folder(out, family, beta, seed):
    return Path(out) / family / f"beta-{beta:g}" / f"seed-{seed}"


def summary_of(folder):
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def command(args, family, beta, seed):
    """The gvae train command line of one run: a new one, or the resumption of one stopped before
    ``args.epochs``; None when its summary covers them already."""
    folder = run_folder(args.out, family, beta, seed)
    summary = summary_of(folder)
    if summary is not None and summary["epochs"] >= args.epochs:
        return None
    base = [sys.executable, "-m", "gvae.cli", "train", "--out", str(folder), "--epochs", str(args.epochs),
            "--threads", str(args.threads), "--quiet"] + (["--data", str(args.data)] if args.data else [])
    if (folder / "checkpoint.npz").is_file():
        return base + ["--resume"]
    side = int(round(args.latent ** 0.5))
    lattice = ["--grid-shape", str(side), str(args.latent // side)] if family in ("grid", "extgrid") else []
    return base + TRAIN + ["--latent", str(args.latent), "--hidden", *map(str, args.hidden), "--posterior", family,
                           *lattice, "--beta", f"{beta:g}", "--seed", str(seed)]


def table(args):
    """{rows, complete, epochs}: per family and beta the test error (percent) and rate (nats) as mean and
    sample standard deviation over the trained seeds (with the values), and the runs that are missing."""
    rows, complete = [], True
    for family in args.families:
        for beta in args.betas:
            found, missing = [], []
            for seed in args.seeds:
                summary = summary_of(run_folder(args.out, family, beta, seed))
                if summary is None or summary["epochs"] < args.epochs:
                    missing.append(seed)
                else:
                    found.append(summary)
            complete &= not missing
            errors = [100 * s["test_error"] for s in found]
            rates = [s["test_rate"] for s in found]
            rows.append({"family": family, "beta": beta, "seeds": len(found), "missing_seeds": missing,
                         "test_error": {**mean_std(errors), "values": errors},
                         "test_rate": {**mean_std(rates), "values": rates},
                         "best_epochs": [s["best_epoch"] for s in found]})
    return {"rows": rows, "complete": complete, "epochs": args.epochs, "paper_error": PAPER_ERROR}


def _cell(stat, digits):
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f}" + ("" if stat["std"] is None else f" ± {stat['std']:.{digits}f}")


def markdown(result):
    lines = [f"Deep VIB on MNIST, {result['epochs']} epochs a run; test error (%) and test rate (nats) with 12 "
             f"posterior samples per image, mean ± sd over seeds (the paper: {PAPER_ERROR}% for the diagonal "
             "family at beta 1e-3).", "", "| family | beta | test error % | test rate | seeds |",
             "| --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        missing = f" ({len(row['missing_seeds'])} missing)" if row["missing_seeds"] else ""
        lines.append(f"| {row['family']} | {row['beta']:g} | {_cell(row['test_error'], 2)} | "
                     f"{_cell(row['test_rate'], 1)} | {row['seeds']}{missing} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and the table")
    parser.add_argument("--epochs", type=int, default=200, help="epochs a run (the paper: 200)")
    parser.add_argument("--families", nargs="+", default=FAMILIES, choices=FAMILIES)
    parser.add_argument("--betas", nargs="+", type=float, default=BETAS)
    parser.add_argument("--seeds", nargs="+", type=int, default=(0, 1))
    parser.add_argument("--latent", type=int, default=256, help="K (a square for the lattice families)")
    parser.add_argument("--hidden", nargs="+", type=int, default=(1024, 1024))
    parser.add_argument("--data", type=Path, help="a labelled .npz data set (default: MNIST)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time")
    parser.add_argument("--threads", type=int, default=1, help="kernel threads of each run")
    parser.add_argument("--table-only", action="store_true", help="train nothing; the table of what is trained")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.jobs < 1 or args.threads < 1:
        parser.error("--epochs, --jobs and --threads must be >= 1")
    if int(round(args.latent ** 0.5)) ** 2 != args.latent and {"grid", "extgrid"} & set(args.families):
        parser.error(f"--latent {args.latent} is not a square, and the lattice families need one")
    if not args.table_only:
        todo = [c for c in (command(args, f, b, s) for f in args.families for b in args.betas for s in args.seeds) if c]
        print(f"{len(todo)} run(s) to train, {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            codes = list(pool.map(lambda c: subprocess.run(c).returncode, todo))
        failed = [c[c.index("--out") + 1] for c, code in zip(todo, codes) if code != 0]
        if failed:
            print(f"{len(failed)} run(s) stopped before the end (give the same command to go on): "
                  + ", ".join(failed), file=sys.stderr)
    result = table(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "table.json", result)
    with atomic_path(args.out / "table.md") as tmp:
        Path(tmp).write_text(markdown(result))
    print(markdown(result), end="")
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""The GGM paper's MNIST table from a finished (or partly finished) ``gvae sweep examples/ggm_sweep.toml``,
beside the paper's numbers: writes ``ggm_table.json``, ``ggm_table.md`` and ``ggm_curves.png``.

    python examples/ggm_results.py runs/ggm --out docs/results

The paper (Malago & Peste, "Variational Autoencoders Endowed with Richer but Still Computationally
Efficient Statistical Models") reports one number per family: the test ELBO and log p(x) of
stochastically binarised MNIST, latent 16, two hidden ELU layers. Each family's row here is the mean and
sample standard deviation over the sweep's seeds; a structured family is compared with the diagonal one
by the difference of the means and its standard error sqrt(s1^2/n1 + s2^2/n2). Runs without a current
evaluation are listed, never dropped silently, and the JSON says whether the table is complete.

``--archive DIR`` also copies the spec and every finished and evaluated run, without its checkpoint
(20 MB a run), into DIR: kilobytes to commit, from which the table is made again, and a sweep folder
that a later sweep goes on from, training only the runs it lacks (docs/models/ggm.md)::

    python examples/ggm_results.py runs/ggm --out docs/results --archive docs/results/ggm_runs
    cp -r docs/results/ggm_runs runs/ggm && gvae sweep examples/ggm_sweep.toml --out runs/ggm
"""
import math
import shutil
import sys
from pathlib import Path

from gvae.io.arguments import ArgumentParser
from gvae.io.files import atomic_path, write_json
from gvae.sweep import state
from gvae.sweep.table import curves, mean_std, write_curves, write_table

PAPER = {"diagonal": (-93.4, -89.2), "chain": (-93.4, -89.1), "extgrid": (-93.0, -88.8)}
METRICS = (("test_elbo", "test ELBO"), ("test_log_likelihood", "log p(x)"))
WINDOW = 50  # epochs: was validation still improving at the end? (the learning curves, in one number)


def _stat(s, digits=2):
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.{digits}f}" + ("" if s["std"] is None else f" ± {s['std']:.{digits}f}")


def difference(a, b):
    """(mean of a - mean of b, its standard error or None) of two {"mean", "std", "n_seeds"}."""
    if a["mean"] is None or b["mean"] is None:
        return None, None
    if a["std"] is None or b["std"] is None:
        return a["mean"] - b["mean"], None
    return a["mean"] - b["mean"], math.sqrt(a["std"] ** 2 / a["n_seeds"] + b["std"] ** 2 / b["n_seeds"])


def _one(values):
    """The value all evaluated runs share, None before any evaluation, else the sorted list of them."""
    return values[0] if len(values) == 1 else (values or None)


def late_gain(valid, window=WINDOW):
    """How much the best validation ELBO rose over the last ``window`` epochs of a run (its validation
    ELBOs ``valid``, one per epoch): max(valid) - max(valid[:-window]); None for a run no longer than that."""
    return max(valid) - max(valid[:-window]) if len(valid) > window else None


def learning_curves(runs):
    """{"best_valid_elbo", "late_gain"} over the seeds of one family, from its runs' [(seed, epochs,
    valid_elbo, lr)] (:func:`gvae.sweep.table.curves`): each a {"mean", "std", "n_seeds"}."""
    gains = [g for g in (late_gain(valid) for _, _, valid, _ in runs) if g is not None]
    return {"best_valid_elbo": mean_std([max(valid) for _, _, valid, _ in runs]), "late_gain": mean_std(gains),
            "late_gain_window": WINDOW}


def results(table, spec):
    """The JSON of docs/results/ggm_table.json from a sweep's table and spec."""
    base = next(iter(spec.runs)).config
    found = curves(spec)
    families = {}
    for name, c in table["configs"].items():
        family = name  # the configurations of examples/ggm_sweep.toml are named by their posterior
        entry = {key: c[key] for key, _ in METRICS}
        entry.update(epochs=c["epochs"], train_seconds=c["train_seconds"], eval_seconds=c["eval_seconds"],
                     seeds=c["seeds"], missing=c["missing"])
        # The curves of the runs in the table only: a run still training would read as unconverged.
        unevaluated = {m["seed"] for m in c["missing"]}
        entry["learning_curves"] = learning_curves([r for r in found.get(name, []) if r[0] not in unevaluated])
        if family in PAPER:
            entry["paper"] = dict(zip(("test_elbo", "test_log_likelihood"), PAPER[family]))
        families[family] = entry
    if "diagonal" in families:
        for family, entry in families.items():
            if family != "diagonal":
                entry["minus_diagonal"] = {key: dict(zip(("mean", "standard_error"),
                                                         difference(entry[key], families["diagonal"][key])))
                                           for key, _ in METRICS}
    iw = sorted({c["iw_samples"] for c in table["configs"].values() if isinstance(c["iw_samples"], int)})
    n_test = sorted({c["n_test"] for c in table["configs"].values() if isinstance(c["n_test"], int)})
    return {"source": "gvae sweep examples/ggm_sweep.toml; python examples/ggm_results.py SWEEP_DIR",
            "data": "MNIST binarised stochastically (training: a new draw every epoch; validation and test: one "
                    "fixed draw), 50,000 training, 10,000 validation and 10,000 test images",
            "model": {"latent": base.latent, "hidden": list(base.hidden), "activation": base.activation,
                      "likelihood": base.likelihood, "batch_size": base.batch_size},
            "budget": {"threads_per_run": spec.threads, "epochs": base.epochs, "schedule": base.schedule, "lr": base.lr, "patience": base.patience,
                       "test_parameters": "the epoch with the best validation ELBO"},
            "epochs": base.epochs, "iw_samples": _one(iw), "n_test": _one(n_test),
            "complete": all(not e["missing"] for e in families.values()),
            "std": table["std"], "families": families, "total_seconds": table["total_seconds"],
            "paper": "Malago & Peste, Variational Autoencoders Endowed with Richer but Still Computationally "
                     "Efficient Statistical Models (the seed's table)"}


def markdown(res):
    lines = ["| posterior | test ELBO | paper | log p(x) | paper | seeds | epochs trained |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for family, e in res["families"].items():
        paper = e.get("paper", {})
        lines.append(f"| {family} | {_stat(e['test_elbo'])} | {paper.get('test_elbo', '')} | "
                     f"{_stat(e['test_log_likelihood'])} | {paper.get('test_log_likelihood', '')} | "
                     f"{e['test_log_likelihood']['n_seeds']} of {len(e['seeds'])} | {_stat(e['epochs'], 1)} |")
    budget = res["budget"]
    note = f"Mean ± {res['std'].replace('; null for one seed', '')}; nats per image, higher is better; "
    if res["iw_samples"] is not None:
        note += f"log p(x) by importance sampling with K = {res['iw_samples']} on {res['n_test']} test images; "
    note += (f"budget: the {budget['schedule']} schedule from lr {budget['lr']}, at most {res['epochs']} epochs, "
             f"patience {budget['patience']}; test numbers at the best validation epoch. Training "
             f"{res['total_seconds']['train_seconds'] / 3600:.1f} h, evaluation "
             f"{res['total_seconds']['eval_seconds'] / 3600:.1f} h ({budget['threads_per_run']} thread(s) per run).")
    lines += ["", note]
    rows = [(f, e["minus_diagonal"]) for f, e in res["families"].items() if "minus_diagonal" in e]
    if rows:
        lines += ["", "Structured minus diagonal (difference of the means ± its standard error; positive: the "
                      "structured family is better):", "", "| posterior | test ELBO | log p(x) |", "| --- | --- | --- |"]
        for family, d in rows:
            cells = [("-" if v["mean"] is None else f"{v['mean']:+.2f}" +
                      ("" if v["standard_error"] is None else f" ± {v['standard_error']:.2f}"))
                     for v in (d["test_elbo"], d["test_log_likelihood"])]
            lines.append(f"| {family} | {cells[0]} | {cells[1]} |")
    lines += ["", "Learning curves (every run's: ggm_curves.png): the best validation ELBO, and how much it rose "
                  "over each run's last epochs (near 0: converged at this budget):", "",
              f"| posterior | best validation ELBO | rise over the last {WINDOW} epochs |", "| --- | --- | --- |"]
    for family, e in res["families"].items():
        lc = e["learning_curves"]
        lines.append(f"| {family} | {_stat(lc['best_valid_elbo'])} | {_stat(lc['late_gain'])} |")
    missing = [f"- {f}/seed-{m['seed']}: {m['reason']}" for f, e in res["families"].items() for m in e["missing"]]
    if missing:
        lines += ["", "**Incomplete.** Runs without a current evaluation:", ""] + missing
    return "\n".join(lines) + "\n"


def archive(sweep_dir, into):
    """Copy into the folder ``into`` the sweep's spec and, of each run with a current evaluation, every
    file but its checkpoint and its lock; returns the ids of the runs copied. ``into`` is then a sweep
    folder whose runs are finished and evaluated (gvae.sweep.state reads a finished run without its
    checkpoint as finished)."""
    spec = state.spec_of(sweep_dir)
    into = Path(into)
    copied = []
    for run in spec.runs:
        progress = state.training(run.folder, run.config)
        if progress.state != "finished" or state.evaluation(run.folder, spec.eval, progress.summary)[0] != "current":
            continue
        target = into / run.folder.relative_to(spec.out)
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(run.folder.iterdir()):
            if f.is_file() and f.name != "checkpoint.npz" and not f.name.startswith("."):
                with atomic_path(target / f.name, suffix=f.suffix) as tmp:
                    shutil.copyfile(f, tmp)
        copied.append(run.id)
    with atomic_path(into / state.SPEC_NAME, suffix=".toml") as tmp:
        shutil.copyfile(Path(sweep_dir) / state.SPEC_NAME, tmp)
    return copied


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the folder of gvae sweep examples/ggm_sweep.toml")
    parser.add_argument("--out", default="docs/results", help="where the three files go")
    parser.add_argument("--archive", metavar="DIR", help="also copy the spec and the evaluated runs, without "
                        "their checkpoints, into DIR (a sweep folder to commit, and to go on from)")
    args = parser.parse_args(argv)
    try:
        spec = state.spec_of(args.sweep_dir)
        table, _ = write_table(args.sweep_dir)
    except (OSError, ValueError) as e:
        print(f"ggm_results: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = results(table, spec)
    write_json(out / "ggm_table.json", res)
    with atomic_path(out / "ggm_table.md") as tmp:
        tmp.write_text(markdown(res))
    picture = write_curves(args.sweep_dir)
    if picture is not None:
        with atomic_path(out / "ggm_curves.png", suffix=".png") as tmp:
            shutil.copyfile(picture, tmp)
    print(markdown(res), end="")
    if args.archive is not None:
        if Path(args.archive).resolve() == Path(args.sweep_dir).resolve():
            print("ggm_results: --archive must be another folder than the sweep's", file=sys.stderr)
            return 2
        copied = archive(args.sweep_dir, args.archive)
        print(f"archived {len(copied)} evaluated run(s) into {args.archive}: {', '.join(copied) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

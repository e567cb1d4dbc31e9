"""The table of a sweep: per configuration, the mean and the sample standard deviation over seeds of the
test ELBO and of log p(x) (from the evaluations the sweep recorded), of the epochs trained and of the
training and evaluation times; written as ``table.json`` and ``table.md`` into the sweep folder, with
``curves.png`` (every run's validation ELBO per epoch) when matplotlib is installed.

The standard deviation is the sample one (ddof = 1: the sum of squared deviations over n - 1), and None
for a single seed. A run without a current evaluation is listed under ``missing`` with the reason; its
configuration's ELBO and log p(x) are over the seeds that have one (each statistic states its n)."""
import math

from ..io.files import atomic_path, read_jsonl, write_json
from . import state

STATS = ("test_elbo", "test_log_likelihood", "epochs", "train_seconds", "eval_seconds")
STD = "sample standard deviation over seeds (ddof = 1); null for one seed"


def mean_std(values):
    """{"mean", "std", "n_seeds"} of a list of numbers (mean and std None for an empty list)."""
    n = len(values)
    mean = math.fsum(values) / n if n else None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n >= 2 else None
    return {"mean": mean, "std": std, "n_seeds": n}


def _why_missing(progress, evaluation, failure, has_eval):
    """The reason a run has no current evaluation (None when it has one); its last failure first."""
    if progress.state == "finished" and evaluation == "current":
        return None
    if progress.state == "damaged":
        return f"damaged: {progress.problem}"
    if failure is not None:
        return f"failed: gvae {failure.get('command')} exit {failure.get('returncode')}: {failure.get('message')}"
    if progress.state in ("new", "unstarted"):
        return "not trained yet"
    if progress.state == "unfinished":
        return f"training not finished ({progress.epochs} epochs done)"
    if not has_eval:
        return "not evaluated: the spec has no [eval] table"
    if evaluation == "stale":
        return "evaluated before its last training or with other [eval] settings: run gvae sweep again"
    return "not evaluated yet"


def run_row(run, settings, failure=None):
    """What a run folder holds for the table: seed, epochs, train_seconds (the epochs' training and
    validation seconds in metrics.jsonl), and from its current evaluation test_elbo, test_log_likelihood,
    eval_seconds, iw_samples and n_test (None where absent); ``missing`` says why there is no evaluation."""
    progress = state.training(run.folder, run.config)
    evaluation, result = ("missing", None) if settings is None else state.evaluation(run.folder, settings, progress.summary)
    finished = progress.state == "finished"
    metrics = run.folder / "metrics.jsonl"
    row = {"seed": run.seed, "epochs": progress.epochs if finished else None,
           "train_seconds": math.fsum(m.get("seconds_with_eval", m["seconds"]) for m in read_jsonl(metrics))
           if finished else None,
           "missing": _why_missing(progress, evaluation, failure, settings is not None)}
    result = result if row["missing"] is None and isinstance(result, dict) else {}
    row.update({"test_elbo": result.get("test_elbo"), "test_log_likelihood": result.get("test_log_likelihood"),
                "eval_seconds": result.get("seconds"), "iw_samples": result.get("iw_samples"),
                "n_test": result.get("n_test")})
    return row


def aggregate(rows):
    """One configuration's entry of the table from its runs' rows (:func:`run_row`): each statistic of
    :data:`STATS` over the rows that have it, iw_samples and n_test (one value, or the sorted list when
    the rows disagree), and the missing runs."""
    entry = {key: mean_std([r[key] for r in rows if r[key] is not None]) for key in STATS}
    for key in ("iw_samples", "n_test"):
        values = sorted({r[key] for r in rows if r[key] is not None})
        entry[key] = values[0] if len(values) == 1 else (values or None)
    entry["seeds"] = [r["seed"] for r in rows]
    entry["missing"] = [{"seed": r["seed"], "reason": r["missing"]} for r in rows if r["missing"]]
    return entry


def build_table(sweep, failures):
    """The table (a JSON-able dict) of a :class:`~gvae.sweep.spec.Sweep` as its folders stand."""
    configs = {}
    for name, settings in sweep.configs.items():
        runs = [run for run in sweep.runs if run.name == name]
        entry = aggregate([run_row(run, sweep.eval, failures.get(run.id)) for run in runs])
        configs[name] = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
                         **entry}
    totals = {key: math.fsum(c[key]["mean"] * c[key]["n_seeds"] for c in configs.values() if c[key]["n_seeds"])
              for key in ("train_seconds", "eval_seconds")}
    return {"sweep": str(sweep.out), "seeds": list(sweep.seeds), "eval": sweep.eval, "std": STD,
            "configs": configs, "total_seconds": totals}


def _number(stat, digits=2):
    if stat["mean"] is None:
        return "-"
    text = f"{stat['mean']:.{digits}f}"
    return text + (f" ± {stat['std']:.{digits}f}" if stat["std"] is not None else "")


def _time(stat):
    """Mean ± std of seconds, in hours, minutes or seconds as suits the mean."""
    if stat["mean"] is None:
        return "-"
    scale, unit = next((s, u) for s, u in ((3600, "h"), (60, "min"), (1, "s")) if stat["mean"] >= s or s == 1)
    return _number({**stat, "mean": stat["mean"] / scale,
                    "std": None if stat["std"] is None else stat["std"] / scale}, 1) + f" {unit}"


def _seconds(value):
    return _time({"mean": value, "std": None})


def markdown(table):
    """The table as Markdown: one row per configuration, then the missing runs and a note on the numbers."""
    lines = ["| configuration | test ELBO | log p(x) | n | epochs | train time | eval time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, c in table["configs"].items():
        lines.append(f"| {name} | {_number(c['test_elbo'])} | {_number(c['test_log_likelihood'])} | "
                     f"{c['test_log_likelihood']['n_seeds']} of {len(c['seeds'])} | {_number(c['epochs'], 1)} | "
                     f"{_time(c['train_seconds'])} | {_time(c['eval_seconds'])} |")
    evaluations = {(c["iw_samples"], c["n_test"]) for c in table["configs"].values() if c["iw_samples"]}
    note = (f"Mean ± {table['std'].replace('; null for one seed', '')} (n: seeds with a current evaluation); "
            "nats per image; ")
    if len(evaluations) == 1:
        k, n = evaluations.pop()
        note += f"log p(x) by importance sampling with K = {k} on {n} test images; "
    totals = table["total_seconds"]
    note += f"total time: training {_seconds(totals['train_seconds'])}, evaluation {_seconds(totals['eval_seconds'])}."
    lines += ["", note]
    missing = [f"- {name}/seed-{m['seed']}: {m['reason']}" for name, c in table["configs"].items()
               for m in c["missing"]]
    if missing:
        lines += ["", "Runs without a current evaluation:", ""] + missing
    return "\n".join(lines) + "\n"


def write_table(sweep_dir):
    """Write table.json and table.md (atomically) into a sweep folder; returns (table, Markdown)."""
    sweep = state.spec_of(sweep_dir)
    table = build_table(sweep, state.failures_of(sweep_dir))
    text = markdown(table)
    write_json(sweep.out / "table.json", table)
    with atomic_path(sweep.out / "table.md") as tmp:
        tmp.write_text(text)
    return table, text


def curves(sweep):
    """{configuration: [(seed, epochs, valid_elbo, lr)]} of every run that has finished an epoch."""
    out = {}
    for run in sweep.runs:
        metrics = run.folder / "metrics.jsonl"
        try:
            rows = [r for r in read_jsonl(metrics) if "valid_elbo" in r] if metrics.is_file() else []
        except ValueError:  # a damaged run: the table names it (run_row); the curves go on without it
            continue
        if rows:
            out.setdefault(run.name, []).append((run.seed, [r["epoch"] for r in rows],
                                                 [r["valid_elbo"] for r in rows], [r["lr"] for r in rows]))
    return out


def write_curves(sweep_dir):
    """Draw ``curves.png`` into a sweep folder; returns its path, or None when matplotlib is missing or
    no run has finished an epoch."""
    from ..plots.canvas import available
    from ..plots.curves import plot_sweep_curves
    if not available():  # the optional extra: without it, no picture
        return None
    sweep = state.spec_of(sweep_dir)
    found = curves(sweep)
    if not found:
        return None
    return plot_sweep_curves(found, sweep.out / "curves.png", f"Validation ELBO per epoch, sweep {sweep.out}")

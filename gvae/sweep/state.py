"""How far a sweep has come, read from its files: the spec and the failures recorded in the sweep
folder, and for each run folder whether it is trained to the end (all its epochs, or stopped early by
its patience) and evaluated with the sweep's [eval] settings after its last training.

An evaluation is tied to the training it measured by ``sweep_eval.json`` in the run folder (written
after each evaluation the sweep makes): the [eval] settings, the run's ``summary.json`` at that time and
the ``eval.json`` written. It is current while both the settings and the summary are unchanged, so a run
trained further (more epochs) is evaluated again, and a ``gvae eval`` by hand with other settings (which
replaces eval.json) leaves the sweep's result as it was."""
import dataclasses
import json
from pathlib import Path

from ..io import files
from ..io.files import write_json
from ..training import rundir
from .spec import load_spec

# The sweep folder's own files, and the sweep's files in each run folder.
SPEC_NAME = "sweep.toml"
RECORD_NAME = "sweep.json"
FAILURES_NAME = "failures.json"
EVAL_RECORD = "sweep_eval.json"
LOG_NAME = "sweep.log"


@dataclasses.dataclass(frozen=True)
class Training:
    """``state``: "new" (an empty or absent folder), "unstarted" (run files but no checkpoint: no epoch
    finished), "unfinished" (a checkpoint, epochs left), "finished", or "damaged" (a run file that cannot
    be read: ``problem`` says which and why; the sweep leaves the run as it is and goes on with the
    others); ``epochs``: epochs in metrics.jsonl; ``summary``: summary.json's content (None without one)."""
    state: str
    epochs: int
    summary: dict
    problem: str = None


def read_json(path):
    """The content of a JSON file, or None when it is absent or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def training(folder, config):
    """The :class:`Training` of the run folder ``folder`` that should be trained as ``config`` says.

    A run whose checkpoint was removed after its training ended, to keep only its results (an archive
    of a sweep: examples/ggm_results.py --archive), is as it was: its summary, metrics and evaluation are
    all that the table reads. Training it further (more epochs) then fails, saying there is no checkpoint
    to resume; without a summary of its last training, it is started over."""
    folder = Path(folder)
    checkpoint = (folder / "checkpoint.npz").is_file()
    try:
        summary = files.read_json(folder / "summary.json") if (folder / "summary.json").exists() else None
        if summary is not None and not isinstance(summary, dict):
            raise ValueError(f"{folder / 'summary.json'} is damaged: not a JSON object")
        metrics = folder / "metrics.jsonl"
        epochs = len(files.read_jsonl(metrics)) if metrics.exists() else 0
    except ValueError as e:
        return Training("damaged", 0, None, str(e))
    if not checkpoint and summary is None:
        return Training("unstarted" if rundir.holds_run(folder) else "new", 0, None)
    # A summary describes the checkpoint only if no epoch was trained after it (a resumed run that was
    # stopped before its end keeps the summary of its earlier end).
    ended = isinstance(summary, dict) and summary.get("epochs") == epochs
    done = ended and (epochs >= config.epochs or _stopped_early(summary, epochs, config.patience))
    if checkpoint or ended:
        return Training("finished" if done else "unfinished", epochs, summary)
    return Training("unstarted", 0, None)


def _stopped_early(summary, epochs, patience):
    """Whether a run that stopped early is finished for ``patience`` (None: the run's own, as on resume)."""
    if not summary.get("stopped_early"):
        return False
    return patience is None or epochs - summary.get("best_epoch", 0) >= patience


def evaluation(folder, settings, summary):
    """("current", the eval.json content the sweep recorded), or ("missing" | "stale", None)."""
    record = read_json(Path(folder) / EVAL_RECORD)
    if not isinstance(record, dict):
        return "missing", None
    if record.get("settings") != settings or record.get("summary") != summary:
        return "stale", None
    return "current", record.get("result")


def record_evaluation(folder, settings):
    """Tie the run's eval.json to its summary.json and the [eval] ``settings`` (after gvae eval ran)."""
    folder = Path(folder)
    write_json(folder / EVAL_RECORD, {"settings": settings, "summary": read_json(folder / "summary.json"),
                                      "result": read_json(folder / "eval.json")})


def spec_of(sweep_dir):
    """The :class:`~gvae.sweep.spec.Sweep` recorded in a sweep folder (ValueError if it holds none)."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SPEC_NAME).is_file():
        raise ValueError(f"{sweep_dir} holds no sweep (no {SPEC_NAME}); give a folder that gvae sweep wrote")
    return load_spec(sweep_dir / SPEC_NAME, out=sweep_dir)


def failures_of(sweep_dir):
    """{run id: {command, returncode, message, log}} of the runs whose last attempt failed."""
    record = read_json(Path(sweep_dir) / FAILURES_NAME)
    return record if isinstance(record, dict) else {}

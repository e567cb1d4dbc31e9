"""A training run's files in its folder, as the loop writes them and as a resumed run reads them back:
``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` (a :class:`TrainingState` in checkpoint form) and
``summary.json`` (docs/reference/api.md, section 5).

:class:`RunFiles` is the listener (:class:`events.Events`) that writes them, under the folder's one-writer
lock (:func:`rundir.writer`); :func:`read_run` and :func:`resume_conflicts` read what a resumed run
continues from."""
import dataclasses
from pathlib import Path

from ..io.files import read_json, read_jsonl, write_json, write_jsonl
from . import checkpoint, rundir
from .checkpoint import config_of
from .config import RESUMABLE, TrainConfig, setting_defaults
from .events import Events


def stamps(folder):
    """What identifies the config.json and checkpoint.npz in ``folder`` (None for one absent): a trainer
    continues a run only if they are still those it read when it takes the folder's lock."""
    found = []
    for name in ("config.json", "checkpoint.npz"):
        try:
            info = (Path(folder) / name).stat()
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(found)


def configuration_file(out):
    """The TrainConfig in the config.json of the run in ``out``, a run without a checkpoint (one stopped
    before its first, or a finished one kept for its results: gvae.sweep.state.training)."""
    path = Path(out) / "config.json"
    try:
        meta = {"config": read_json(path)}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: the run has no checkpoint, and its configuration cannot be read ({e})") from None
    return config_of(path, meta)


def finished_metrics(path, epochs):
    """The rows of metrics.jsonl (``path``) of the first ``epochs`` epochs, those a checkpoint holds (rows
    of later epochs, written before a stop that kept an earlier checkpoint, are left out); ValueError
    naming the file when it lacks one of them."""
    try:
        rows = read_jsonl(path)
    except FileNotFoundError:
        rows = []
    numbers = [row.get("epoch") if isinstance(row, dict) else None for row in rows[:epochs]]
    if numbers != list(range(1, epochs + 1)):
        held = f"{len(rows)} rows" + (f", not numbered 1 to {epochs}" if len(rows) >= epochs else "")
        raise ValueError(f"{path} does not hold one row for each of the {epochs} epochs of the run's checkpoint "
                         f"({held}): it was emptied, cut short or damaged, so the run cannot be continued with its "
                         "metrics; replace it with --overwrite, or train a new run (another --out)")
    return rows[:epochs]


@dataclasses.dataclass
class SavedRun:
    """What a run folder holds to continue from: its configuration, the checkpoint's ``arrays`` and
    ``meta`` (None, and meta {"epoch": 0}, for a run stopped before its first checkpoint), the metrics
    rows of its finished epochs, and the :func:`stamps` of its files when they were read."""
    config: object
    arrays: dict
    meta: dict
    metrics: list
    stamps: tuple
    checkpoint: Path


def read_run(out):
    """The :class:`SavedRun` in the run folder ``out`` (checked as :func:`rundir.check` does for resume)."""
    folder = rundir.check(out, resume=True)
    read_from = stamps(folder)  # before reading: a file replaced from here on is seen when the lock is taken
    path = folder / "checkpoint.npz"
    if path.is_file():
        arrays, meta = checkpoint.load(path, need=checkpoint.RESUME)
        config = config_of(path, meta)
    else:
        arrays, meta, config = None, {"epoch": 0}, configuration_file(folder)
    return SavedRun(config, arrays, meta, finished_metrics(folder / "metrics.jsonl", meta["epoch"]), read_from, path)


def resume_conflicts(out, given):
    """The settings in ``given`` (field name -> value, as a user asked for them) that differ from the
    run's own configuration and may not change on resume: a list of (name, given, the run's value), the
    values as the configuration holds them (lists for several values, one value as itself)."""
    path = Path(out) / "checkpoint.npz"
    run = config_of(path, checkpoint.load(path)[1]) if path.is_file() else configuration_file(out)
    # Every setting, another task's option at its default (what the run had of it: nothing to change).
    own = {**setting_defaults(), **run.flat()}
    try:
        asked = {**own, **TrainConfig.of(**{**run.flat(), **given}).flat()}
    except ValueError:
        asked = None
    return [(name, _listed(value if asked is None else asked[name]), _listed(own[name]))
            for name, value in sorted(given.items())
            if name not in RESUMABLE and (asked is None or _listed(asked[name]) != _listed(own[name]))]


def _listed(value):
    """A configuration value with its tuples as lists (as config.json shows it)."""
    return [_listed(v) for v in value] if isinstance(value, (tuple, list)) else value


class RunFiles(Events):
    """Writes a training run's folder: holds its lock while the loop runs (a run the trainer is
    ``continuing`` goes on; any other is refused unless the trainer was told to overwrite it), config.json at the start, metrics.jsonl and checkpoint.npz after every healthy epoch
    (each atomically, so the checkpoint on disk is always one of a healthy epoch), metrics.jsonl alone
    when an epoch diverged, summary.json at the end."""

    def __init__(self, read_from=None):
        self.read_from = read_from  # stamps() of the run files as the trainer last read or wrote them

    def running(self, trainer):
        return rundir.writer(trainer.out, resume=trainer.continuing,
                             overwrite=trainer.overwrite and not trainer.continuing)

    def started(self, trainer):
        if trainer.continuing and stamps(trainer.out) != self.read_from:
            raise rundir.RunFolderError(f"{trainer.out} was written by another gvae process after this one read "
                                        "its run; run the command again to continue the run as it is now")
        write_json(trainer.out / "config.json", trainer.config.flat())
        self.read_from = stamps(trainer.out)

    def epoch_end(self, trainer, row):
        arrays, meta = trainer.state.to_checkpoint(trainer.config, trainer.data_sha256)
        write_jsonl(trainer.out / "metrics.jsonl", trainer.state.metrics)
        checkpoint.save(trainer.out / "checkpoint.npz", arrays, meta)
        trainer.saved_epoch = trainer.state.epoch
        self.read_from = stamps(trainer.out)

    def diverged(self, trainer, why):
        write_jsonl(trainer.out / "metrics.jsonl", trainer.state.metrics)

    def finished(self, trainer, summary):
        write_json(trainer.out / "summary.json", summary)

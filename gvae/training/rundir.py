"""A run folder and its one writer.

A run folder (docs/api.md, section 5) holds ``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` and
``summary.json`` (and the evaluations written beside them). Nothing in it is replaced without being
asked: a new run refuses a folder that already holds a run unless it is told to ``overwrite`` it, and
only ``resume`` continues one. While a process trains into a folder it holds an exclusive lock on the
folder's ``.gvae.lock`` (``fcntl.flock``, released by the kernel when the process ends, however it ends),
so a second process on the same folder stops at once with an error naming the first one.
"""
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ..io.files import remove_stale_temporaries

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "summary.json")
EVAL_PARTIAL = "eval_k{k}.partial.npz"  # gvae eval's progress with K = k (training.evaluate's partial file)
# What gvae eval, sample, plot and analyze write from a run: replaced with it, so none describes another run.
DERIVED = ("eval.json", "eval_k*.json", "decoder_means.png", "decoder_samples.png", "curves.png",
           "reconstructions.png", "samples.png", "manifold.png", "cholesky_diagonals.png", "correlation.png",
           "analysis.json", "gaps.png", "unit_activity.png", EVAL_PARTIAL.format(k="*"))
LOCK_NAME = ".gvae.lock"
EVAL_LOCK_NAME = ".gvae-eval.lock"  # one gvae eval at a time per run folder (beside its training)


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (the message says why and what to do)."""


def run_path(out):
    """``out`` as a Path, checked: a non-empty name of a folder (or of one that can be made)."""
    if out is None or not str(out).strip():
        raise RunFolderError("the run folder (--out) must be a non-empty path, e.g. --out runs/chain")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"the run folder {path} exists and is not a folder; give --out a folder name")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RunFolderError(f"cannot make the run folder {path}: {parent} is not a folder")
    return path


def holds_run(path):
    """Whether the folder holds (part of) a gvae run."""
    return any((Path(path) / name).exists() for name in RUN_FILES)


def check(out, resume=False, overwrite=False):
    """Refuse, before any work, what :func:`writer` would refuse (without taking the lock)."""
    path = run_path(out)
    if resume and overwrite:
        raise RunFolderError("--resume continues a run and --overwrite replaces it: give one of them")
    if resume and not (path / "checkpoint.npz").is_file():
        raise RunFolderError(f"there is no run to resume in {path} (no checkpoint.npz); start one without --resume")
    if not resume and not overwrite and holds_run(path):
        raise RunFolderError(f"{path} already holds a run; continue it with --resume, or replace it with --overwrite "
                             "(or choose another --out)")
    return path


@contextmanager
def folder_lock(path, lock_name=LOCK_NAME, what="run folder", advice="wait for it or choose another --out"):
    """Hold an exclusive lock on ``path / lock_name`` (made with its folder if need be) for the body, or
    raise RunFolderError naming the process (pid) that holds it, and ``advice``. The lock file holds the
    holder's pid."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / lock_name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunFolderError(f"cannot write the {what} {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderError(f"{path} is being written by another gvae process (pid {holder}); {advice}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def writer(out, resume=False, overwrite=False):
    """Hold the folder's lock while the body writes the run: checks as :func:`check` does (again, now
    under the lock), removes the run files and what was derived from them (:data:`DERIVED`) when
    ``overwrite``, and the temporary files that a killed write left behind. Yields the folder's Path."""
    with folder_lock(run_path(out)) as path:
        check(path, resume, overwrite)
        if overwrite:
            for pattern in RUN_FILES + DERIVED:
                for old in path.glob(pattern):
                    old.unlink()
        remove_stale_temporaries(path)
        yield path

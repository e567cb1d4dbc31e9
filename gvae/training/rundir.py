"""A run folder and its one writer.

A run folder (docs/reference/api.md, section 5) holds ``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` and
``summary.json`` (and what gvae eval, sample, plot and analyze derive from them). Nothing in it is replaced
without being asked: a new run refuses a folder that already holds a run unless it is told to ``overwrite``
it, and only ``resume`` continues one (a run stopped before its first checkpoint starts over from epoch 0
with its own configuration).

One writer per run folder, whatever the command: a process that writes into a run folder (gvae train, eval,
analyze, and sample and plot when they write there) holds an exclusive lock on the folder's ``.gvae.lock``
(``fcntl.flock``, released by the kernel when the process ends, however it ends) while it reads and writes,
so a second one stops at once with an error naming the first one's pid and command. The lock file is
opened without following a symbolic link and must be a regular file of one name, so a planted link (or hard
link) never makes gvae write outside the folder; it is removed when the lock is released (see
:func:`folder_lock`). gvae writes every other file by a rename onto its name (:func:`gvae.io.files.atomic_path`),
which replaces a link instead of writing through it. A run folder that is itself a link is used as the
folder it leads to.
"""
import errno
import fcntl
import fnmatch
import os
import stat
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

from ..io.files import remove_stale_temporaries

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "summary.json")
EVAL_PARTIAL = "eval_k{k}.partial.npz"  # gvae eval's progress with K = k (evaluation.evaluate's partial file)
# What gvae eval, sample, plot and analyze write from a run: replaced with it, so none describes another run.
DERIVED = ("eval.json", "eval_k*.json", "decoder_means.png", "decoder_samples.png", "curves.png",
           "reconstructions.png", "samples.png", "manifold.png", "cholesky_diagonals.png", "correlation.png",
           "analysis.json", "gaps.png", "surgery.png", "unit_activity.png", EVAL_PARTIAL.format(k="*"))
LOCK_NAME = ".gvae.lock"
LOCK_TRIES = 100  # a lock file replaced more often than this while it is taken is not only gvae's doing


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


def refuse_folders(path, names):
    """RunFolderError if any of ``names`` in the folder ``path`` is a folder (or another thing that is
    neither a file nor a link), where gvae reads or writes a file of that name."""
    for name in names:
        try:
            mode = os.lstat(Path(path) / name).st_mode
        except FileNotFoundError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a file"
            raise RunFolderError(f"{Path(path) / name} is {kind}, where gvae keeps a file of that name; "
                                 "move it away")


def existing_run(run):
    """``run`` as a Path, checked to be a folder holding a trained run (a readable ``checkpoint.npz``
    aside), for the commands that read one; else RunFolderError saying what is there instead."""
    path = Path(run).expanduser()
    if not path.exists():
        raise RunFolderError(f"there is no run folder at {path}; give a folder that gvae train wrote")
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a run folder (it is a file); give a folder that gvae train wrote")
    refuse_folders(path, RUN_FILES)
    if (path / "checkpoint.npz").is_file():
        return path
    if (path / "summary.json").exists():
        raise RunFolderError(f"{path} holds the results of a run without its checkpoint.npz (removed to keep only "
                             "its results): there is no trained model to read")
    if (path / "config.json").exists():
        raise RunFolderError(f"{path} holds a run with no finished epoch (no checkpoint.npz yet); train it: "
                             f"gvae train --resume --out {path}")
    raise RunFolderError(f"{path} holds no gvae run (no checkpoint.npz); gvae train --out {path} writes one")


def resume_refusal(path):
    """Why the run in the folder ``path`` cannot be resumed (a message), or None when it can: from its
    checkpoint, or from epoch 0 when it has only its config.json (stopped before its first checkpoint)."""
    if (path / "checkpoint.npz").is_file():
        return None
    if (path / "summary.json").exists():  # e.g. a sweep's archive (gvae.sweep.state.training)
        return (f"there is no run to resume in {path}: it holds the results of a run without its checkpoint.npz "
                "(removed to keep only its results), so it cannot be continued; start a new run (another --out) "
                "or replace it with --overwrite")
    if (path / "config.json").is_file():
        return None
    return f"there is no run to resume in {path} (no checkpoint.npz or config.json); start one without --resume"


def check(out, resume=False, overwrite=False):
    """Refuse, before any work, what :func:`writer` would refuse (without taking the lock)."""
    path = run_path(out)
    if resume and overwrite:
        raise RunFolderError("--resume continues a run and --overwrite replaces it: give one of them")
    refuse_folders(path, RUN_FILES)
    if resume:
        why = resume_refusal(path)
        if why is not None:
            raise RunFolderError(why)
    elif not overwrite and holds_run(path):
        raise RunFolderError(f"{path} already holds a run; continue it with --resume, or replace it with --overwrite "
                             "(or choose another --out)")
    return path


def _open_lock(lock, what):
    """(descriptor, fstat) of the lock file ``lock`` (made if absent), never through a link;
    RunFolderError if it cannot be opened or is not a regular file of (at most) one name."""
    try:
        # O_NOFOLLOW: a link (dangling or not) in its place is an error, not a way to create or truncate a
        # file elsewhere; O_NONBLOCK: opening a FIFO planted there does not wait for a writer.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunFolderError(f"{lock} is a symbolic link; gvae does not follow links for its lock file: "
                                 "remove the link") from None
        if e.errno == errno.EISDIR:
            raise RunFolderError(f"{lock} is a folder, where gvae keeps its lock file; move it away") from None
        raise RunFolderError(f"cannot write the {what} {lock.parent}: {e.strerror}") from None
    info = os.fstat(fd)
    # No link count of 0 here: a file its holder removed after it was opened is locked and then given up
    # (folder_lock), not refused.
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        kind = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a file with other names (hard links)"
        raise RunFolderError(f"{lock} is {kind}; gvae writes only a lock file of its own there: remove it")
    return fd, info


def _names(lock, info):
    """Whether the name ``lock`` leads (without following a link) to the file ``info`` (an fstat) describes."""
    try:
        now = os.stat(lock, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _holder(fd):
    """"pid N: COMMAND" from a held lock file (as :func:`folder_lock` writes it)."""
    pid, _, command = os.pread(fd, 256, 0).decode(errors="replace").partition("\n")[0].strip().partition(" ")
    if not pid.isdigit():  # written not yet, or not by gvae
        return "pid unknown"
    return f"pid {pid}" + (f": {command}" if command and command.isprintable() else "")


@contextmanager
def folder_lock(path, lock_name=LOCK_NAME, what="run folder", command="gvae",
                advice="wait for it to end or choose another --out"):
    """Hold an exclusive lock on ``path / lock_name`` (made with its folder if need be) for the body, or
    raise RunFolderError naming the process that holds it (pid and ``command``), and ``advice``. The lock
    file holds "PID COMMAND" and is removed when the lock is released.

    The removal is race-free: the holder unlinks the file while it still holds the lock, and a process
    that locked a file keeps the lock only if the name still leads to that file (else, it locked one that
    its holder removed after this process opened it: it opens the name again)."""
    path = Path(path)
    lock = path / lock_name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot write the {what} {path}: {e.strerror}") from None
    for _ in range(LOCK_TRIES):
        fd, info = _open_lock(lock, what)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderError(f"{path} is being written by another gvae process ({holder}); {advice}") from None
        if _names(lock, info):
            break
        os.close(fd)
    else:
        raise RunFolderError(f"{lock} was replaced {LOCK_TRIES} times while gvae took the lock; is another program "
                             "writing it? Stop it, or choose another folder")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        yield path
    finally:
        if _names(lock, info):  # (not a file that someone put in its place meanwhile)
            with suppress(OSError):  # a folder removed or made read-only meanwhile keeps it; the lock is released
                os.unlink(lock)
        os.close(fd)  # closing the descriptor releases the lock


def lock_to_write(run, folder, command):
    """For a command that reads the run folder ``run`` and writes into ``folder``: the run folder's lock
    (:func:`folder_lock`) when ``folder`` is the run folder, else a context doing nothing (the run's
    checkpoint is replaced in one rename, so reading it beside a writer is safe). Yields the run's Path."""
    run = existing_run(run)
    folder = Path(folder)
    if folder.exists() and os.path.samefile(folder, run):
        return folder_lock(run, command=command, advice="wait for it to end, or write elsewhere (--out)")
    return nullcontext(run)


def _derived_and_run_files(path):
    """The entries of ``path`` (links included, dangling or not) named as a run file or :data:`DERIVED`."""
    patterns = RUN_FILES + DERIVED
    return sorted(p for p in path.iterdir() if any(fnmatch.fnmatchcase(p.name, pattern) for pattern in patterns))


@contextmanager
def writer(out, resume=False, overwrite=False, command="gvae train"):
    """Hold the folder's lock while the body writes the run: checks as :func:`check` does (again, now
    under the lock), removes the run files and what was derived from them (:data:`DERIVED`) when
    ``overwrite`` (a link among them is removed, never what it leads to), and the temporary files that a
    killed write left behind. Yields the folder's Path."""
    with folder_lock(run_path(out), command=command) as path:
        check(path, resume, overwrite)
        if overwrite:
            old = _derived_and_run_files(path)
            refuse_folders(path, [p.name for p in old])  # before any is removed: all of the run goes, or none
            for p in old:
                p.unlink()
        remove_stale_temporaries(path)
        yield path

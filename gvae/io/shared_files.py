"""Files that several processes read and write at once (in gvae's cache folders: Numba's compiled kernels,
:mod:`gvae.kernels.cpu.compile_cache`, and this machine's plans, :mod:`gvae.kernels.cpu.tuning`): an
advisory lock between the processes, a file replaced whole, and a small file read with care.

The lock is ``flock`` on a lock file, shared (readers) or exclusive (a writer); the kernel releases it
when its descriptor is closed, however the process ends, so a killed process leaves nothing held.
Neither a lock nor a read follows a symbolic link or waits on a FIFO, and no descriptor outlives an
``exec``: these files live in cache folders that other programs (or a damaged disk) may have put
anything into. A file is written by the run folder's own atomic write (:func:`gvae.io.files.atomic_path`:
a temporary name beside it, created new, flushed to disk and renamed over the old one), so a reader sees
the old file or the new one whole. Reads go through the run folder's careful open too
(:func:`gvae.io.files.open_regular`).
"""
import contextlib
import errno
import fcntl
import os
import stat
import tempfile

from .files import CAREFUL, atomic_path, open_regular

__all__ = ["writable_folder", "file_lock", "reader_lock", "read_small_text", "replace_text"]



def writable_folder(path):
    """Whether ``path`` exists as a folder (or can be made one) and a file can be created in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _open_lock(path):
    """A descriptor of the regular file ``path`` (made when missing) to lock; an OSError naming it where
    a link or another kind of file stands there."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | CAREFUL, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"{os.fspath(path)} is a symbolic link; gvae does not follow links for its "
                          "lock files: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{os.fspath(path)} is not a regular file, where gvae keeps a lock file: "
                      "remove it")
    return fd


@contextlib.contextmanager
def _holding(fd, exclusive):
    """The lock of the descriptor ``fd``, held until the context ends (then the descriptor is closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def file_lock(path, exclusive):
    """Hold the lock file ``path`` (made when missing): exclusively to write what it guards, shared to
    read it. An OSError naming the lock where it cannot be held (the folder cannot be written, a link or
    anything but a regular file stands in its place)."""
    return _holding(_open_lock(path), exclusive)


def reader_lock(path):
    """:func:`file_lock` shared, or no lock where it cannot be held: for a reader of a file that every
    writer replaces whole (:func:`replace_text`), which sees the old or the new either way."""
    try:
        fd = _open_lock(path)
    except OSError:
        return contextlib.nullcontext()
    return _holding(fd, exclusive=False)


def read_small_text(path, limit):
    """The UTF-8 text of the file ``path``, or None where there is none. Only a regular file is read
    (:func:`open_regular`), and only up to ``limit`` bytes: a ValueError saying which of these it is not,
    or that its bytes are not UTF-8. An OSError on reading (no permission) is raised as it is."""
    try:
        f = open_regular(path)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ValueError("it is not a regular file") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"it is larger than such a file can be ({size} bytes, at most {limit})")
        data = f.read(limit + 1)  # it may have grown since the fstat
    if len(data) > limit:
        raise ValueError(f"it is larger than such a file can be ({limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text (byte {exc.start})") from None


def replace_text(path, text):
    """Write ``text`` to ``path`` atomically (:func:`gvae.io.files.atomic_path`), so that a reader sees the
    old file or the new one whole, never a part. The rename replaces whatever stood at ``path`` (a link
    itself, not its target)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

"""Files that several gvae processes read and write at once (Numba's compiled kernels, :mod:`jit`; the
products' plans, :mod:`tuning`): an advisory lock between the processes, and a file replaced whole.

The lock is ``flock`` on a lock file, shared (readers) or exclusive (a writer); the kernel releases it
when its descriptor is closed, however the process ends, so a killed process leaves nothing held."""
import contextlib
import fcntl
import os
import tempfile

__all__ = ["file_lock", "replace_text", "writable_folder"]


def writable_folder(path):
    """Whether ``path`` exists as a folder (or can be made one) and a file can be created in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def file_lock(path, exclusive):
    """Hold the lock file ``path`` (made when missing): exclusively to write what it guards, shared to
    read it. A reader of a folder where the lock file cannot be made goes on unlocked, since nothing can
    be written there either; a writer gets the OSError."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_text(path, text):
    """Write ``text`` to ``path`` by a rename of a finished temporary file in its folder (flushed to disk
    first), so that a reader sees the old file or the new one whole, never a part."""
    folder, name = os.path.split(os.fspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

"""An advisory lock between processes: ``flock`` on a lock file, shared (readers) or exclusive (a writer).

The kernel releases it when its descriptor is closed, however the process ends, so a killed process
leaves nothing held. Used by the caches that several gvae processes read and write at once: Numba's
compiled kernels (:mod:`jit`) and the products' plans (:mod:`tuning`)."""
import contextlib
import fcntl
import os

__all__ = ["file_lock"]


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

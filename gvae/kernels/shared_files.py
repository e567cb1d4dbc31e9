"""Files that several gvae processes read and write at once (Numba's compiled kernels, :mod:`jit`; the
products' plans, :mod:`tuning`): an advisory lock between the processes, a file replaced whole, and a
small file read with care.

The lock is ``flock`` on a lock file, shared (readers) or exclusive (a writer); the kernel releases it
when its descriptor is closed, however the process ends, so a killed process leaves nothing held.
Neither the lock nor a read follows a symbolic link or waits on a FIFO: these files live in a cache
folder that other programs (or a damaged disk) may have put anything into."""
import contextlib
import errno
import fcntl
import os
import stat
import tempfile

__all__ = ["file_lock", "replace_text", "writable_folder", "read_small_text"]

# Open flags for a name that must be a file of its own: O_NOFOLLOW refuses a link in its place (dangling
# or not; followed, it would read /dev/zero or create a file outside the folder), O_NONBLOCK makes opening
# a FIFO return at once rather than wait for a writer (it changes nothing for a regular file).
_CAREFUL = os.O_NOFOLLOW | os.O_NONBLOCK


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
    read it. Where the lock cannot be held (the folder cannot be written, a link or anything but a regular
    file stands in its place), a reader goes on unlocked, since a writer replaces the file whole
    (:func:`replace_text`) and a reader sees the old or the new; a writer gets an OSError naming the lock,
    since two writers unlocked could each keep their own content and one would be lost."""
    try:
        fd = _open_lock(path)
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


def _open_lock(path):
    """A descriptor of the regular file ``path`` for :func:`file_lock` (made when missing); an OSError
    naming it where a link or another kind of file stands there."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _CAREFUL, 0o666)
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


def read_small_text(path, limit):
    """The UTF-8 text of the file ``path``, or None where there is none. Only a regular file is read (no
    link is followed, a FIFO or device is not opened for reading), and only up to ``limit`` bytes: a
    ValueError saying which of these it is not, or that its bytes are not UTF-8. An OSError on reading
    (no permission) is raised as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | _CAREFUL)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("it is a symbolic link, which gvae does not follow there") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"it is larger than such a file can be ({info.st_size} bytes, at most {limit})")
        data = f.read(limit + 1)  # it may have grown since the fstat
    if len(data) > limit:
        raise ValueError(f"it is larger than such a file can be ({limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text (byte {exc.start})") from None


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

"""Writing files so that nothing written is lost (a temporary name in the same folder, then a rename), and
reading them without following a link or waiting on a FIFO."""
import errno
import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Open flags for a name that must be a file of its own: O_NOFOLLOW refuses a link in its place (dangling
# or not; followed, it would read /dev/zero or create a file outside the folder), O_NONBLOCK makes opening
# a FIFO return at once rather than wait for a writer (it changes nothing for a regular file), O_CLOEXEC
# keeps the descriptor (and a lock on it) out of programs the process starts.
CAREFUL = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success its content is flushed to disk and it
    replaces ``path`` in one rename, so a reader (or a kill mid-write) never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results should read like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder, name="*"):
    """Delete the temporary files that :func:`atomic_path` left in ``folder`` when its process was killed
    mid-write (``.NAME.*.tmp*``; only those of the file ``name`` when given); returns their names. Call it
    only while no other process writes there (that file, when ``name`` is given)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(f".{name}.*.tmp*") if p.is_file())
    for p in stale:
        p.unlink()
    return [p.name for p in stale]


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, inf) replaced by None, so that it encodes as strict
    JSON (``null``) rather than the ``NaN``/``Infinity`` tokens other readers reject."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _dumps(obj, **options):
    return json.dumps(json_safe(obj), allow_nan=False, sort_keys=True, **options)


def write_json(path, obj):
    """``obj`` as strict JSON (non-finite numbers as null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(_dumps(obj, indent=2) + "\n")


def write_jsonl(path, rows):
    """One strict-JSON object per line (non-finite numbers as null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(_dumps(r) + "\n" for r in rows))


def open_regular(path):
    """A binary file object of the regular file ``path``, opened for reading without following a link or
    waiting on a FIFO: FileNotFoundError where there is none, IsADirectoryError for a folder, a ValueError
    saying why where a link or anything else but a regular file stands there (an OSError such as no
    permission is raised as it is)."""
    try:
        fd = os.open(path, os.O_RDONLY | CAREFUL)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("it is a symbolic link, which gvae does not follow there") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "a folder", os.fspath(path))
        raise ValueError("it is not a regular file")
    return os.fdopen(fd, "rb")


def _read_text(path):
    """The UTF-8 text of the regular file ``path``, read without following a link or waiting on a FIFO
    (:func:`open_regular`); ValueError naming it when it is a folder, a link or
    anything but a regular file, unreadable or not UTF-8 (FileNotFoundError when absent)."""
    try:
        with open_regular(path) as f:
            return f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is damaged: not UTF-8 text (byte {e.start})") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, where a file was expected") from None
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None


def read_json(path):
    """The content of the JSON file ``path``; ValueError naming the file when it cannot be read as one."""
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged: not JSON ({e})") from None


def read_jsonl(path):
    """The objects of the JSON-lines file ``path`` (one per non-blank line); ValueError naming the file
    (and the line) when it cannot be read as one."""
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is damaged: line {number} is not JSON ({e})") from None
    return rows


def check_writable(folder, what):
    """Make ``folder`` (and its parents) if need be and prove it can be written by creating and removing a
    temporary file in it, before a command spends its work; ValueError naming ``what`` and the reason."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gvae-write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"cannot write {what} in {folder}: {e.strerror}") from None

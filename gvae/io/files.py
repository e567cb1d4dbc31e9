"""Writing files so that nothing written is lost: a temporary name in the same folder, then a rename."""
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


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


def _read_text(path):
    """The UTF-8 text of the file ``path``; ValueError naming it when it is a folder, unreadable or not
    UTF-8 (FileNotFoundError when absent)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is damaged: not UTF-8 text (byte {e.start})") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, where a file was expected") from None
    except FileNotFoundError:
        raise
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

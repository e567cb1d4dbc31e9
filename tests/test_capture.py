"""The device-neutral capture (gvae.kernels.capture) on each device: a stretch of kernel work recorded
once, then run on new data copied into its inputs, bit for bit the same work run as it is called; and the
training step that gvae.training.captured_step records, checks and replays, bit for bit the taped step.
The CPU records the native program of its threads' tasks; CUDA records a graph of a stream, here on the
host emulation (tests/cuda_emulation: its stream capture records the launches of gvae's kernels, the
cuBLAS calls and CuPy's operators, done again by the graph's launch; tests/test_graph_step.py checks the
step on a real GPU). A refusal says why."""
import re

import numpy as np
import pytest

from gvae import kernels
from gvae.training import TrainConfig, Trainer
from tests.cuda_emulation import emulator, fake_cupy


@pytest.fixture(params=["cpu", "emulated cuda"])
def xp(request):
    """The array module of the device under test."""
    if request.param == "cpu":
        yield np
        return
    why = emulator.unavailable()
    if why:
        pytest.skip(why)
    with fake_cupy.installed() as module:
        yield module


def _work(h, b):
    """Two of gvae's kernels in place on h (M, N): relu(tanh(h + b) + b)."""
    kernels.bias_activation(h, b, "tanh")
    kernels.bias_activation(h, b, "relu")
    return h


def _data(rng, dtype):
    return rng.standard_normal((37, 19)).astype(dtype), rng.standard_normal(19).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_record_runs_as_the_work_itself_on_new_data(xp, dtype):
    rng = np.random.default_rng(0)
    h0, b0 = _data(rng, dtype)
    h, b = xp.asarray(h0), xp.asarray(b0)
    capture = kernels.capture(h)
    assert kernels.has_capture(kernels.device_of(h)) and capture.key() == capture.key()
    with capture.around():
        _work(xp.asarray(h0.copy()), b)  # once before the recording: a GPU's pool then holds what it asks for
        record, why = capture.record(_work, (h, b))
    assert why is None and record.outputs is h
    for _ in range(3):
        new_h, new_b = _data(rng, dtype)
        expected = kernels.to_host(_work(xp.asarray(new_h.copy()), xp.asarray(new_b)))  # (NumPy's: new_h itself)
        with capture.around():
            h[...] = xp.asarray(new_h)
            b[...] = xp.asarray(new_b)
            assert record.run() is True
        assert np.array_equal(kernels.to_host(record.outputs), expected)


def test_the_cpu_refuses_python_work_among_the_kernels():
    h, b = _data(np.random.default_rng(1), np.float64)

    def mixed(h, b):
        _work(h, b)
        kernels.over_blocks(lambda lo, hi: h[lo:hi], [(0, len(h))])  # a Python function among the tasks
        return h
    record, why = kernels.capture(h).record(mixed, (h, b))
    assert record is None and why == "a Python function (over_blocks) ran while recording"


def test_cuda_refuses_a_read_of_the_device_and_names_where():
    why = emulator.unavailable()
    if why:
        pytest.skip(why)
    with fake_cupy.installed() as cp:
        h0, b0 = _data(np.random.default_rng(2), np.float32)
        h, b = cp.asarray(h0), cp.asarray(b0)
        capture = kernels.capture(h)

        def reading(h, b):
            return float(kernels.to_host(_work(h, b)).sum())  # a read of the device inside the work
        with capture.around():
            record, why = capture.record(reading, (h, b))
        assert record is None
        assert re.fullmatch(r"RuntimeError in to_host \(gvae/kernels/backend\.py:\d+\): emulated stream: a copy to "
                            r"the host while the stream is capturing .*", why), why


def test_a_device_without_a_capture_has_none():
    from tests import fake_device
    fake_device.install()
    x = fake_device.xp.zeros(3)
    assert kernels.capture(x) is None and not kernels.has_capture("fake")


def _state(t):
    s = t.state
    average = [] if s.average is None else [s.average]
    return [kernels.to_host(a) for a in (s.params.flat, s.optimizer.m, s.optimizer.v, *average)] + [
        s.optimizer.step, s.bad_steps, s.skipped_steps]


@pytest.mark.parametrize("settings", [{}, {"posterior": "chain", "clip_norm": 1e-3}, {"polyak": 0.9, "iw_samples": 3}])
def test_the_captured_step_is_the_taped_step_on_each_device(xp, tmp_path, settings):
    """A plan of batches that records, checks, replays, meets a non-finite batch (a skipped step), a new KL
    weight (recorded again) and a new epoch; every step's reported means, then the parameters, Adam's
    moments and the counters, bit for bit those of the same trainer on the tape."""
    rng = np.random.default_rng(0)
    x = (rng.random((50, 16)) < 0.3).astype(np.float32)
    y = np.zeros(len(x), np.int64)
    data = {"train": (x, y), "valid": (x[:10], y[:10]), "test": (x[:10], y[:10])}
    cfg = TrainConfig(**{"latent": 3, "hidden": (8,), "batch_size": 10, "seed": 0, "dtype": "float32", **settings})
    device = "cpu" if xp is np else "cuda"
    captured = Trainer(cfg, data, tmp_path / "captured", progress=False, quiet=True, device=device)
    taped = Trainer(cfg, data, tmp_path / "taped", progress=False, quiet=True, device=device)
    taped.captured.capture = None
    captured.captured.trial_steps = 0  # (the replays are counted below: no steps taped for a timed trial)
    xs = [captured.train_x[i * 10:(i + 1) * 10] for i in range(5)]
    bad = xp.asarray(np.where(np.arange(16) == 0, np.nan, kernels.to_host(xs[0])).astype(np.float32))
    plan = [(xs[i % 5], 1.0) for i in range(5)] + [(bad, 1.0), (xs[0], 0.5), (xs[1], 0.5), (xs[2], 0.5), "epoch",
                                                  (xs[3], 0.5), (xs[4], 0.5)]
    with np.errstate(invalid="ignore"):
        for step in plan:
            if step == "epoch":
                captured.rng, taped.rng = captured.epoch_generator(1), taped.epoch_generator(1)
                continue
            assert captured.step(*step) == taped.step(*step)
    assert captured.captured.refused == [] and captured.captured.replays == 5
    assert captured.state.skipped_steps == 1
    assert all(np.array_equal(a, b) for a, b in zip(_state(captured), _state(taped)))

"""The training step's forward and backward recorded as a CUDA graph (gvae/training/captured_step.py over
gvae/kernels/cuda/capture.py) against the taped step, bit for bit, on a real GPU (skipped without CuPy
and a GPU: tests/test_capture.py runs a smaller plan on the host emulation of tests/cuda_emulation).
tools/gpu_probe.py trainer runs the same comparison at the benchmarks' sizes."""
import re

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    _GPUS = cupy.cuda.runtime.getDeviceCount()
except Exception:  # noqa: BLE001  (no driver)
    _GPUS = 0
pytestmark = pytest.mark.skipif(not _GPUS, reason="no CUDA GPU visible to CuPy")


def _trainer(tmp_path, name, posterior, iw, clip=None, polyak=0.0):
    from gvae.training import TrainConfig, Trainer
    rng = np.random.default_rng(0)
    x = (rng.random((80, 784)) < 0.13).astype(np.float32)
    y = np.zeros(len(x), np.int64)
    data = {"train": (x, y), "valid": (x[:20], y[:20]), "test": (x[:20], y[:20])}
    cfg = TrainConfig(posterior=posterior, latent=9, hidden=(50,), batch_size=20, iw_samples=iw, seed=0,
                      dtype="float32", clip_norm=clip, polyak=polyak)
    return Trainer(cfg, data, tmp_path / name, progress=False, quiet=True, device="cuda")


def _state(t):
    from gvae.kernels import to_host
    s = t.state
    average = [] if s.average is None else [to_host(s.average)]
    return [to_host(a) for a in (s.params.flat, s.optimizer.m, s.optimizer.v)] + average + [
        s.optimizer.step, s.bad_steps, s.skipped_steps]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("posterior, iw, clip, polyak", [("diagonal", 1, None, 0.0), ("extgrid", 5, None, 0.0),
                                                        ("chain", 1, 1e-3, 0.0), ("diagonal", 1, None, 0.9)])
def test_replayed_steps_are_the_eager_steps(tmp_path, posterior, iw, clip, polyak):
    """With Polyak averaging too (Adam and the average's step follow the replay, as the tape), and a
    skipped step."""
    graphed = _trainer(tmp_path, "graph", posterior, iw, clip, polyak)
    eager = _trainer(tmp_path, "eager", posterior, iw, clip, polyak)
    eager.captured.capture = None
    xs = [graphed.train_x[i * 20:(i + 1) * 20] for i in range(4)]
    bad = xs[0].copy()
    bad[0, 0] = np.nan  # a non-finite loss: the step is skipped, on the device as on the host
    plan = [(xs[0], 1.0), (xs[1], 1.0), (xs[2], 1.0), (bad, 1.0), (xs[3], 1.0), (xs[0], 0.5), (xs[1], 0.5),
            ("epoch", None), (xs[2], 0.5), (xs[3], 0.5), (xs[0], 0.5)]
    for x, kl in plan:
        if isinstance(x, str):
            graphed.rng, eager.rng = graphed.epoch_generator(1), eager.epoch_generator(1)
            continue
        assert graphed.step(x, kl) == eager.step(x, kl)
    captured = graphed.captured
    assert len(captured.records) == 1 and captured.records[0].trusted and captured.refused == []
    assert captured.replays >= 4
    assert graphed.state.skipped_steps == 1
    assert _same(_state(graphed), _state(eager))


def test_a_step_that_reads_the_device_runs_on_the_tape(tmp_path):
    graphed = _trainer(tmp_path, "graph", "diagonal", 1)
    eager = _trainer(tmp_path, "eager", "diagonal", 1)
    eager.captured.capture = None
    step_fn = graphed.captured.step_fn

    def reading(params, model, x, *rest):  # a loss that reads the device inside the step
        float(x.sum())
        return step_fn(params, model, x, *rest)
    graphed.captured.step_fn = reading
    xs = [graphed.train_x[i * 20:(i + 1) * 20] for i in range(3)]
    for x in xs:
        assert graphed.step(x, 1.0) == eager.step(x, 1.0)
    assert graphed.captured.records == [] and graphed.captured.replays == 0
    [(_, why)] = graphed.captured.refused
    # CuPy's error, and the innermost frame of gvae's it passed through (the step's call of the loss).
    assert re.fullmatch(r"\w+ in _tape \(gvae/training/captured_step\.py:\d+\): .+", why, re.DOTALL), why
    assert _same(_state(graphed), _state(eager))

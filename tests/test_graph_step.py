"""The training step recorded as a CUDA graph (gvae/training/graph_step.py) against the eager step, bit
for bit, on a real GPU (skipped without CuPy and a GPU: a capture cannot be emulated on the host).
tools/gpu_probe.py trainer runs the same comparison at the benchmarks' sizes."""
import warnings

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
    """With Polyak averaging too: the average's step is in the recorded Adam pass, and a skipped step
    leaves it, as the eager step does."""
    graphed = _trainer(tmp_path, "graph", posterior, iw, clip, polyak)
    eager = _trainer(tmp_path, "eager", posterior, iw, clip, polyak)
    eager.graph = None
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
    assert graphed.graph.recorded is not None and graphed.graph.refused is None
    assert graphed.state.skipped_steps == 1
    assert _same(_state(graphed), _state(eager))


def test_a_step_that_reads_the_device_runs_eagerly(tmp_path):
    graphed = _trainer(tmp_path, "graph", "diagonal", 1)
    eager = _trainer(tmp_path, "eager", "diagonal", 1)
    eager.graph = None
    step_args = graphed.task.step_args

    def reading(batch, rng, kl_weight):  # a task that reads the device inside its step
        float(batch[0].sum())
        return step_args(batch, rng, kl_weight)
    graphed.task.step_args = reading
    xs = [graphed.train_x[i * 20:(i + 1) * 20] for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x in xs:
            assert graphed.step(x, 1.0) == eager.step(x, 1.0)
    assert graphed.graph.refused and sum("could not be recorded as a CUDA graph" in str(w.message) for w in caught) == 1
    assert _same(_state(graphed), _state(eager))

"""The device-neutral capture (gvae.kernels.capture) on each device: a stretch of kernel work recorded
once, then run on new data copied into its inputs, bit for bit the same work run as it is called. The CPU
records the native program of its threads' tasks; CUDA records a graph of a stream, here on the host
emulation (tests/cuda_emulation, whose stream capture records the launches of gvae's own kernels: CuPy's
operators run at once there, so a whole training step cannot be captured on it; tests/test_graph_step.py
checks the step on a real GPU). A refusal says why."""
import re

import numpy as np
import pytest

from gvae import kernels
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

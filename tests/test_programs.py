"""Recorded programs (gvae/kernels/cpu/programs.py): the native tasks of a stretch of kernel calls, replayed
in one native call. A replay gives what the calls give, bit for bit, on whatever the arrays hold now (every
output poisoned first); it makes no Python call per task; it refuses what it cannot replay in one line; it
leaves gvae's threads as it found them, whether the workers were asleep or spinning."""
import sys
import time

import numpy as np
import pytest

from gvae import kernels
from gvae.kernels import matmul_cpu
from gvae.kernels.cpu import programs, threads
from gvae.kernels.cpu.state import RUNTIME


class Layers:
    """Two dense ELU layers forward and the first one's backward, through gvae's kernels, on fixed arrays
    (the layout of a training step's kernel calls)."""

    def __init__(self, dtype, rng, batch=24):
        def normal(*shape, scale=1.0):
            return (scale * rng.standard_normal(shape)).astype(dtype)
        self.rng, self.dtype = rng, dtype
        self.x = normal(batch, 40)
        self.W1, self.b1 = normal(40, 30, scale=0.2), normal(30)
        self.W2, self.b2 = normal(30, 20, scale=0.2), normal(20)
        self.g = normal(batch, 20)
        self.h, self.y = np.empty((batch, 30), dtype), np.empty((batch, 20), dtype)
        self.gh, self.gx = np.empty((batch, 20), dtype), np.empty((batch, 30), dtype)
        self.gW1 = np.empty((40, 30), dtype)

    def outputs(self):
        return self.h, self.y, self.gh, self.gx, self.gW1

    def __call__(self):
        kernels.matmul(self.x, self.W1, out=self.h)
        kernels.bias_activation(self.h, self.b1, "elu")
        kernels.matmul(self.h, self.W2, out=self.y)
        kernels.bias_activation(self.y, self.b2, "elu")
        kernels.bias_activation_grad(self.g, self.y, "elu", out=self.gh)
        kernels.matmuls([(self.gh, self.W2.T, self.gx), (self.h.T, self.gh, None)])
        kernels.matmul(self.x.T, self.gx, out=self.gW1)

    def new_inputs(self):
        self.x[...] = self.rng.standard_normal(self.x.shape)
        self.g[...] = self.rng.standard_normal(self.g.shape)
        self.W1 *= self.dtype(0.5)


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_replay_is_the_calls_bit_for_bit_on_new_data(split_everything, count, dtype):
    kernels.set_threads(count)
    layers = Layers(dtype, np.random.default_rng(count))
    layers()
    with programs.recording() as program:
        layers()
    assert program.refused is None
    assert program.groups >= 7 and len(program) >= 8  # a hand-over per call at least (the pair: one or two)
    if count > 1:  # the workers took part
        assert int(program.table()[:, programs.THREAD].max()) == count - 1
    for _ in range(2):
        layers.new_inputs()
        layers()
        expected = [a.copy() for a in layers.outputs()]
        for a in layers.outputs():
            a[...] = np.nan
        program.run()
        for a, e in zip(layers.outputs(), expected):
            assert np.array_equal(a, e)


def _python_calls(fn):
    """How many Python functions run inside fn() (the profiler's call events, fn's own frame aside)."""
    calls = []
    sys.setprofile(lambda frame, event, arg: calls.append(frame.f_code) if event == "call" else None)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return len(calls)


@pytest.mark.parametrize("count", [1, 2])
def test_a_replay_makes_no_python_call_per_task(split_everything, count):
    kernels.set_threads(count)
    layers = Layers(np.float32, np.random.default_rng(0))
    layers()
    with programs.recording() as short:
        layers()
    with programs.recording() as long:
        for _ in range(10):
            layers()
    assert len(long) == 10 * len(short)
    short.run(), long.run()  # the table built, the workers started
    # Not equal: the count varies by a few from run to run (29 against 26 once, in a loaded suite run),
    # but a call per task would add at least one for each of the long program's extra tasks.
    assert _python_calls(long.run) - _python_calls(short.run) < len(long) - len(short)
    assert _python_calls(layers) > 5 * len(short)  # what the calls themselves cost in Python


def test_a_replay_finds_the_workers_asleep_and_leaves_them_usable(split_everything):
    kernels.set_threads(2)
    layers = Layers(np.float64, np.random.default_rng(1))
    layers()
    with programs.recording() as program:
        layers()
    time.sleep(20 * threads.SPIN_SECONDS)  # every worker asleep on its bell
    assert all(w.sleeping for w in RUNTIME.workers)
    layers.new_inputs()
    layers()
    expected = layers.gW1.copy()
    layers.gW1[...] = np.nan
    program.run()
    assert np.array_equal(layers.gW1, expected)
    # The workers' counts follow what the replay posted: an ordinary call hands over and returns.
    layers()
    assert np.array_equal(layers.gW1, expected)
    out = []
    threads.run([lambda: out.append(1), lambda: out.append(2)])
    assert sorted(out) == [1, 2]


def test_a_python_task_refuses_the_recording_and_the_replay_says_why(split_everything):
    kernels.set_threads(2)
    with programs.recording() as program:
        threads.run([lambda: None, lambda: None])
    assert "without a native form" in program.refused
    with pytest.raises(ValueError, match="cannot be replayed: a task without a native form"):
        program.run()


def test_a_recorded_sparse_product_has_room_for_any_batch_and_guards_its_decision():
    """The product of a mostly-zero factor runs on its compressed rows, in scratch sized while recording
    for a factor with no zeros; a replay on a factor the calls would multiply densely does not hold, and
    stops at the guard, before the product."""
    rng = np.random.default_rng(0)
    x = (rng.random((50, 60)) < 0.05).astype(np.float32)
    W = rng.standard_normal((60, 8)).astype(np.float32)
    out = np.empty((50, 8), np.float32)
    with programs.recording() as program:
        kernels.matmul(x, W, out=out)
    assert program.refused is None and "_block_product" in repr(program._kept)
    x[...] = rng.random(x.shape) < 0.15  # three times the nonzeros recorded, still sparse
    expected = kernels.matmul(x, W)
    out[...] = np.nan
    program.run()
    assert program.holds() and np.array_equal(out, expected)
    x[...] = 1.0  # dense: the calls would take the BLAS
    out[...] = np.nan
    program.run()
    assert not program.holds() and np.isnan(out).all()


def test_a_replay_refuses_another_thread_count(split_everything):
    kernels.set_threads(2)
    layers = Layers(np.float32, np.random.default_rng(0))
    with programs.recording() as program:
        layers()
    kernels.set_threads(1)
    with pytest.raises(ValueError, match="recorded for 2 thread"):
        program.run()


def test_the_innermost_recording_records_and_other_threads_do_not(split_everything):
    kernels.set_threads(1)
    layers = Layers(np.float32, np.random.default_rng(0))
    with programs.recording() as outer:
        with programs.recording() as inner:
            layers()
        assert RUNTIME.recording.get() is outer
    assert len(outer) == 0 and len(inner) > 0
    assert RUNTIME.recording.get() is None


def test_the_workers_keep_spinning_through_a_long_task_of_the_caller(split_everything):
    """Between two hand-overs the caller runs a product far longer than a worker spins before it sleeps:
    held, the worker is still there for the second hand-over (asleep, nothing native could wake it)."""
    kernels.set_threads(2)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 500, 500)).astype(np.float32)
    big, small = np.empty((500, 500), np.float32), np.empty((2, 8, 8), np.float32)
    long_task = matmul_cpu._Product(a, b, big)
    pair = [matmul_cpu._Product(a[:8, :8], b[:8, :8], small[k]) for k in range(2)]
    start = time.perf_counter()
    long_task()
    assert time.perf_counter() - start > 2 * threads.SPIN_SECONDS
    with programs.recording() as program:
        threads.run(pair)
        threads.run_here([long_task])
        threads.run(pair)
    assert program.groups == 3
    expected = small.copy()
    small[...] = np.nan
    program.run()
    assert np.array_equal(small, expected)

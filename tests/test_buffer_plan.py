"""A recorded program's arrays packed by their lifetimes (gvae/kernels/cpu/buffer_plan.py): a chain of layers
whose activations the recorded calls allocate moves into an arena a fraction of their size, the
activations of layers apart sharing memory; its replays are the calls bit for bit on new data, on one thread
and on several; an array read before any task writes it (a constant NumPy made) leaves the program as it was;
what the caller keeps never moves."""
import numpy as np
import pytest

from gvae import kernels
from gvae.kernels.cpu import buffer_plan, capture, threads

WIDTH, BATCH, LAYERS = 256, 64, 6  # (64 x 256 float32: 64 KiB an activation, the smallest that moves)


def _weights(rng, dtype):
    return [(rng.standard_normal((WIDTH, WIDTH)) / 16).astype(dtype) for _ in range(LAYERS)], \
        [(rng.standard_normal(WIDTH) / 4).astype(dtype) for _ in range(LAYERS)]


def _chain(x, Ws, bs, read_only=False):
    """relu(... relu(x W0 + b0) ...) through the kernels, each activation a new array (each layer handed a
    read-only view of it where ``read_only``); returns the last."""
    h = x
    for W, b in zip(Ws, bs):
        out = np.empty((len(h), W.shape[1]), x.dtype)
        kernels.matmul(h, W, out=out)
        kernels.bias_activation(out, b, "relu")
        h = out.view()
        h.flags.writeable = not read_only
    return h


def _addresses(record):
    return {a.ctypes.data for group in record.program._kept for task in group for a in task.arrays()}


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_chain_of_activations_shares_memory_and_replays_the_calls(split_everything, count, dtype):
    kernels.set_threads(count)
    rng = np.random.default_rng(count)
    Ws, bs = _weights(rng, dtype)
    x = rng.standard_normal((BATCH, WIDTH)).astype(dtype)
    _chain(x, Ws, bs)
    made, why = capture.CpuCapture().record(_chain, (x, Ws, bs), keep=(*Ws, *bs))
    assert why is None and made.packed is not None
    size, moved = made.packed
    activation = BATCH * WIDTH * np.dtype(dtype).itemsize
    assert moved == (LAYERS - 1) * activation  # every activation but the output (kept: it is read after a run)
    assert size <= 3 * activation  # a layer's input and output live at once, no more
    before = len(_addresses(made))
    for _ in range(3):
        x[...] = rng.standard_normal(x.shape)
        Ws[0] *= dtype(0.9)
        assert made.run()
        expected = _chain(x.copy(), Ws, bs)
        assert np.array_equal(made.outputs, expected)
    assert len(_addresses(made)) == before and threads.get_threads() == count


def test_an_array_read_before_any_task_writes_it_leaves_the_program_as_it_was():
    """A constant NumPy wrote while recording (the program never writes it) must keep its memory: the check
    run with the arena full of NaN differs, and the tasks are put back."""
    rng = np.random.default_rng(0)
    Ws, bs = _weights(rng, np.float32)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)

    def with_constant(x, Ws, bs):
        h = _chain(x, Ws, bs)
        twos = np.full_like(h, 2.0)  # NumPy's work, outside the tasks: read by the product below
        out = np.empty_like(h)
        kernels.matmul(twos, Ws[0], out=out)
        return out
    with_constant(x, Ws, bs)
    made, why = capture.CpuCapture().record(with_constant, (x, Ws, bs), keep=(*Ws, *bs))
    assert why is None and made.packed is None
    x[...] = rng.standard_normal(x.shape)
    assert made.run() and np.array_equal(made.outputs, with_constant(x, Ws, bs))


def test_what_the_caller_keeps_never_moves():
    rng = np.random.default_rng(1)
    Ws, bs = _weights(rng, np.float32)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    scratch = [np.empty((BATCH, WIDTH), np.float32) for _ in range(LAYERS)]

    def into(x, Ws, bs):  # the activations in arrays made before the recording, kept by the caller
        h = x
        for W, b, out in zip(Ws, bs, scratch):
            kernels.matmul(h, W, out=out)
            kernels.bias_activation(out, b, "relu")
            h = out
        return h
    into(x, Ws, bs)
    made, _ = capture.CpuCapture().record(into, (x, Ws, bs), keep=(*Ws, *bs, *scratch))
    assert made.packed is None  # nothing left to move
    large = {a.ctypes.data for group in made.program._kept for task in group for a in task.arrays()
             if a.nbytes >= buffer_plan.MIN_BYTES}  # (besides them: the products' checks' flags)
    assert large == {a.ctypes.data for a in (x, *Ws, *scratch)}


def test_a_moved_array_keeps_its_read_only_flag():
    """A kernel's C entry is typed by whether its arrays are read-only (entries.Entry.address), so a read-only
    view that the recorded calls passed stays read-only where it moves, and the replay calls the kernels
    the calls compiled."""
    rng = np.random.default_rng(2)
    Ws, bs = _weights(rng, np.float32)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)

    def read_only_inputs(x, Ws, bs):
        return _chain(x, Ws, bs, read_only=True)
    read_only_inputs(x, Ws, bs)
    made, why = capture.CpuCapture().record(read_only_inputs, (x, Ws, bs), keep=(*Ws, *bs))
    assert why is None and made.packed is not None
    inputs = [task.arrays()[0] for group in made.program._kept for task in group if len(task.arrays()) == 3]
    assert [a.flags.writeable for a in inputs] == [True] + [False] * (LAYERS - 1)
    moved = [buffer_plan._allocation(a).dtype == np.uint8 for a in inputs]  # (views of the arena's bytes)
    assert moved == [False] + [True] * (LAYERS - 1)  # x stays where it is
    x[...] = rng.standard_normal(x.shape)
    assert made.run() and np.array_equal(made.outputs, read_only_inputs(x.copy(), Ws, bs))


def test_places_share_memory_only_between_lifetimes_that_do_not_meet():
    spans = {"a": (100, 0, 2), "b": (100, 1, 3), "c": (100, 3, 5), "d": (5000, 4, 4)}
    offsets, size = buffer_plan._places(spans)
    page = buffer_plan.ALIGN
    assert offsets["d"] == 0 and offsets["a"] == 0  # d first (largest); a lives before it
    assert offsets["b"] == page and offsets["c"] == 2 * page  # b meets a; c meets b and d (at 0..5000 < 2 pages)
    assert size == 2 * page + 100

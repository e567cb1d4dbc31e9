"""gvae's own threads (gvae/kernels/cpu/threads.py) and the kernels that split their work over them: every
split kernel gives what the whole call gives on one thread; the pool's hand-over, errors, nesting and
fork; each BLAS call on one thread, the BLAS's thread count restored. The split thresholds are lowered
so that small arrays split."""
import math
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import pytest

from gvae import kernels
from gvae.kernels import adam_cpu, matmul_cpu
from gvae.kernels.cpu import blas, entries, programs, threads, worker_loop
from gvae.kernels.cpu.state import RUNTIME
from tests.band_reference import random_factor


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_threads_refuses_what_is_not_a_positive_int(bad):
    before = kernels.get_threads()
    with pytest.raises(ValueError, match="integer >= 1"):
        kernels.set_threads(bad)
    assert kernels.get_threads() == before


@pytest.mark.parametrize("n,grain,workers", [(10, 3, 3), (10, 3, 8), (5, 10, 4), (0, 1, 2), (1000, 1, 3)])
def test_blocks_cover_the_range_in_order(n, grain, workers):
    kernels.set_threads(workers)
    try:
        parts = threads.blocks(n, grain)
    finally:
        kernels.set_threads(1)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert len(parts) <= workers
    assert len(parts) == 1 or all(hi - lo >= grain for lo, hi in parts)


def test_run_runs_every_task_on_distinct_threads_and_waits():
    kernels.set_threads(3)
    try:
        seen, barrier = [], threading.Barrier(3, timeout=10)

        def task(k):
            barrier.wait()  # all three must be running at once, or this times out
            seen.append((k, threading.get_ident()))
        threads.run([lambda k=k: task(k) for k in range(3)])
    finally:
        kernels.set_threads(1)
    assert sorted(k for k, _ in seen) == [0, 1, 2]
    assert len({ident for _, ident in seen}) == 3


def test_run_reraises_after_every_task_has_finished():
    kernels.set_threads(2)
    done = []
    try:
        def slow():
            threading.Event().wait(0.05)
            done.append("slow")

        def bad():
            raise ZeroDivisionError("from a task")
        with pytest.raises(ZeroDivisionError, match="from a task"):
            threads.run([bad, slow])
        assert done == ["slow"]
        with pytest.raises(ZeroDivisionError):
            threads.run([slow, bad])
        threads.run([slow, slow])  # the pool still works after errors
    finally:
        kernels.set_threads(1)
    assert done == ["slow"] * 4


def test_an_interrupted_call_leaves_nothing_for_the_next():
    """Ctrl-C in the caller's own task: the workers' task still finishes before run returns (re-raising
    the interrupt), and the next call waits for its own tasks, not for a stale completion."""
    kernels.set_threads(2)
    log = []
    try:
        def interrupted():
            raise KeyboardInterrupt

        def slow(tag):
            threading.Event().wait(0.05)
            log.append(tag)
        with pytest.raises(KeyboardInterrupt):
            threads.run([interrupted, lambda: slow("first")])
        assert log == ["first"]
        threads.run([lambda: log.append("caller"), lambda: slow("second")])
        assert sorted(log) == ["caller", "first", "second"]
    finally:
        kernels.set_threads(1)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="no pthread_kill here")
def test_ctrl_c_while_waiting_for_a_worker_waits_for_it():
    """Ctrl-C arrives while the caller waits for a worker's longer task (the caller polls in Python
    then): run re-raises it only once the worker's task has finished, and the next call runs normally."""
    kernels.set_threads(2)
    log, main = [], threading.get_ident()
    # Python leaves SIGINT ignored when it starts with it ignored (a test run started in the background by a
    # non-interactive shell, as `cmd &` in a script): Ctrl-C's own handler here, whatever the test run's.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        def slow():
            signal.pthread_kill(main, signal.SIGINT)  # from the worker: lands while its task runs
            threading.Event().wait(0.3)
            log.append("worker done")
        with pytest.raises(KeyboardInterrupt):
            threads.run([lambda: None, slow])
        assert log == ["worker done"]
        threads.run([lambda: log.append("caller"), lambda: log.append("worker")])
        assert sorted(log) == ["caller", "worker", "worker done"]
    finally:
        signal.signal(signal.SIGINT, before)
        kernels.set_threads(1)


def test_a_run_inside_a_task_runs_inline():
    kernels.set_threads(2)
    out = []
    try:
        threads.run([lambda: threads.run([lambda: out.append(1), lambda: out.append(2)]), lambda: out.append(3)])
    finally:
        kernels.set_threads(1)
    assert sorted(out) == [1, 2, 3]


def in_forked_child(target):
    """What ``target(queue)`` puts on its queue in a forked child, which must exit cleanly."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    return queue.get(timeout=5)


def _child_sum(queue):
    kernels.set_threads(2)
    x = np.arange(1000, dtype=np.float64)
    queue.put(kernels.sum_squares(x))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_forked_child_makes_its_own_workers(split_everything):
    kernels.set_threads(2)
    threads.run([lambda: None, lambda: None])  # the parent's workers exist before the fork
    assert in_forked_child(_child_sum) == float(np.sum(np.arange(1000.0) ** 2))


def _results(fun, n):
    """fun() on 1 thread and on n threads."""
    kernels.set_threads(1)
    one = fun()
    kernels.set_threads(n)
    return one, fun()


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_elementwise_kernels_match_one_thread(split_everything, n, dtype):
    rng = np.random.default_rng(n)
    h = rng.standard_normal((37, 29)).astype(dtype)
    b = rng.standard_normal(29).astype(dtype)
    g = rng.standard_normal((37, 29)).astype(dtype)
    for act in ("elu", "tanh", "softplus", "relu"):
        one, many = _results(lambda: kernels.bias_activation(h.copy(), b, act), n)
        np.testing.assert_array_equal(one, many)
        (gh1, gb1), (ghn, gbn) = _results(lambda: kernels.bias_activation_grad(g, one, act), n)
        np.testing.assert_array_equal(gh1, ghn)
        np.testing.assert_allclose(gb1, gbn, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # S = 3 samples share each row of x: a block that starts mid-sample must still pair rows correctly
    logits = rng.standard_normal((3, 7, 29)).astype(dtype)
    x = (rng.random((7, 29)) < 0.5).astype(dtype)
    (l1, d1), (ln, dn) = _results(lambda: kernels.bernoulli_loglik(logits, x, want_grad=True), n)
    np.testing.assert_array_equal(l1, ln)
    np.testing.assert_array_equal(d1, dn)
    dense = (x * logits - np.logaddexp(0, logits.astype(np.float64))).sum(-1)
    np.testing.assert_allclose(ln, dense, rtol=1e-5 if dtype == np.float32 else 1e-12)
    logw = rng.standard_normal((23, 11)).astype(dtype)
    (o1, w1), (on, wn) = _results(lambda: kernels.log_mean_exp(logw), n)
    np.testing.assert_array_equal(o1, on)
    np.testing.assert_array_equal(w1, wn)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("B,M", [(13, 8), (5, 11)])
def test_split_mmd_matches_one_thread(split_everything, n, B, M):
    # Blocks run over max(B, M) rows: z's rows, then the rows of y past B (B < M) or not (B > M).
    rng = np.random.default_rng(B)
    z, y = rng.standard_normal((B, 3)), rng.standard_normal((M, 3))
    for kernel in ("imq", "rbf"):
        (v1, g1), (vn, gn) = _results(lambda: kernels.mmd(z, y, kernel, want_grad=True), n)
        assert float(vn) == pytest.approx(float(v1), rel=1e-13)
        np.testing.assert_array_equal(g1, gn)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_split_optimiser_kernels_match_one_thread(split_everything, n):
    rng = np.random.default_rng(0)
    g = rng.standard_normal(100_003).astype(np.float32)
    one, many = _results(lambda: kernels.sum_squares(g), n)
    assert many == pytest.approx(one, rel=1e-6)
    assert many == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)), rel=1e-6)
    start = [rng.standard_normal(1001).astype(np.float32) for _ in range(4)]

    def step():
        p, grad, m, v = (a.copy() for a in start)
        m, v = np.abs(m), np.abs(v)
        kernels.adam_update(p, grad, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=3, scale=0.5)
        return np.concatenate([p, m, v])
    one, many = _results(step, n)
    np.testing.assert_array_equal(one, many)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_workers_blocks_of_the_step_kernels_run_as_c_entries(split_everything, monkeypatch, n, dtype):
    """A worker's block of Adam, of the parameters' average, of the squared norm, of a product with a
    mostly-zero factor, of a bias and activation (forward and backward), of the Bernoulli likelihood and a
    chunk of the banded products (L x, L^T x, the outer products of their gradients) is handed over as a C
    entry (gvae.kernels.cpu.entries), which its native loop calls without the GIL, and gives what one
    thread gives, bit for bit (the sums over blocks to rounding); a product whose b is a block of a larger
    array,
    an activation whose bias is strided and Adam over buffers off their items' alignment go through the
    worker's Python, as before."""
    monkeypatch.setattr(matmul_cpu, "MIN_SPARSE_WORK", 0.0)
    posted = []
    post = threads._Worker.post

    def watched(self, task, native=None):
        kind = worker_loop.PYTHON if native is None else native[0]
        if kind != worker_loop.QUIT:  # (set_threads stopping workers)
            posted.append(kind)
        post(self, task, native)
    monkeypatch.setattr(threads._Worker, "post", watched)
    rng = np.random.default_rng(5)
    start = [rng.standard_normal(1001).astype(dtype) for _ in range(4)]

    def adam():
        p, g, m, v = (a.copy() for a in start)
        v = np.abs(v)
        kernels.adam_update(p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=2, scale=0.25)
        return np.concatenate([p, m, v])
    x = (rng.random((40, 60)) < 0.1).astype(dtype)
    W = rng.standard_normal((60, 36)).astype(dtype)
    g = rng.standard_normal((40, 36)).astype(dtype)

    def products():
        return np.concatenate([kernels.matmul(x, W).ravel(), kernels.matmul(x.T, g).ravel()])
    h = rng.standard_normal((9, 36)).astype(dtype)
    b = rng.standard_normal(72).astype(dtype)

    def layer():
        return kernels.bias_activation(h.copy(), b[:36], "elu")
    logits = rng.standard_normal((3, 9, 36)).astype(dtype)
    pixels = (rng.random((9, 36)) < 0.5).astype(dtype)

    def likelihood():
        rec, grad = kernels.bernoulli_loglik(logits, pixels, want_grad=True)
        return np.concatenate([rec.ravel(), grad.ravel(), kernels.bernoulli_loglik(logits, pixels)[0].ravel()])
    y = kernels.bias_activation(h.copy(), b[:36], "elu")
    upstream = rng.standard_normal((9, 36)).astype(dtype)

    def average():
        a = start[0].copy()
        kernels.average_update(a, start[1], decay=0.99)
        return a
    offsets = (0, 1, 9, 10, 11)
    L = random_factor(rng, (40,), offsets, 150).astype(dtype)
    v = rng.standard_normal((10, 40, 150)).astype(dtype)  # 400 pairs x 150 x 5: past the band driver's threshold

    def band():
        return np.concatenate([kernels.band_matvec_t(L, offsets, v).ravel(), kernels.band_matvec(L, offsets, v).ravel(),
                               kernels.band_outer(v, v[::-1], offsets, (40,)).ravel()])
    for fun in (adam, products, layer, likelihood, average,
                lambda: kernels.bias_activation_grad(upstream, y, "elu")[0], band):
        posted.clear()
        one, many = _results(fun, n)
        np.testing.assert_array_equal(one, many)
        assert posted and set(posted) == {worker_loop.CALL}
    # Sums of per-block sums: the same to rounding, not bit for bit, across thread counts.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for fun in (lambda: kernels.sum_squares(start[0]), lambda: kernels.bias_activation_grad(upstream, y, "elu")[1]):
        posted.clear()
        one, many = _results(fun, n)
        np.testing.assert_allclose(one, many, rtol=tol, atol=tol)
        assert posted and set(posted) == {worker_loop.CALL}
    posted.clear()
    kernels.set_threads(n)
    np.testing.assert_array_equal(kernels.bias_activation(h.copy(), b[::2], "tanh"),
                                  kernels.bias_activation(h.copy(), b[::2].copy(), "tanh"))
    np.testing.assert_allclose(kernels.matmul(x, W[:, 3:30]), x.astype(float) @ W[:, 3:30].astype(float), rtol=tol,
                               atol=tol)
    assert worker_loop.PYTHON in posted and worker_loop.CALL in posted  # (the strided bias's, the copy's)
    posted.clear()  # buffers off their items' alignment: also through Python, and the same values
    raw = np.zeros(4 * 1001 * np.dtype(dtype).itemsize + 1, np.uint8)
    odd = [raw[1 + k * 1001 * np.dtype(dtype).itemsize:][:1001 * np.dtype(dtype).itemsize].view(dtype) for k in range(4)]
    assert not any(a.flags.aligned for a in odd)
    for a, value in zip(odd, start):
        a[:] = np.abs(value)
    kernels.adam_update(*odd, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=2, scale=0.25)
    expected = [np.abs(value) for value in start]
    kernels.set_threads(1)
    kernels.adam_update(*expected, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=2, scale=0.25)
    for got, want in zip(odd, expected):
        np.testing.assert_array_equal(got, want)
    assert posted == [worker_loop.PYTHON] * (n - 1)


def test_a_c_entrys_float_arguments_keep_every_bit():
    float_of = numba.njit(lambda pattern: entries.float_of(pattern))
    for x in (0.1, -2.5e-300, 1e308, float("inf"), 5e-324, -0.0):
        back = float_of(entries.bits(x))
        assert back == x and math.copysign(1.0, back) == math.copysign(1.0, x)
    assert math.isnan(float_of(entries.bits(float("nan"))))


def test_a_c_entry_with_more_arguments_than_the_board_holds_is_refused_when_declared():
    """An entry's arguments are known from its declaration: one that would not fit the board is refused
    there, naming the kernel, as is one that does not name the kernel's parameters, before any call could
    hand it over; one that fits runs on the workers."""
    @numba.njit
    def first_rows(x, out):
        out[0] = x[0, 0]

    sizes = [f"n{k}" for k in range(entries.CAPACITY - 2)]  # x's address and sizes, out's: one too many
    with pytest.raises(ValueError, match="first_rows takes .* at most .* arguments on the board"):
        entries.Entry(first_rows, x=entries.array(*sizes), out=entries.array("one"))
    entries.Entry(first_rows, x=entries.array(*sizes[1:]), out=entries.array("one"))  # (a board's worth)
    with pytest.raises(ValueError, match=r"declares the parameters \['x'\], but the kernel takes \['x', 'out'\]"):
        entries.Entry(first_rows, x=entries.array("m", "n"))
    averages = [np.full(5, float(k)) for k in range(3)]
    kernels.set_threads(3)
    try:
        tasks = [entries.Call(adam_cpu._AVERAGE, (a, np.ones(5), 0.5)) for a in averages]
        assert tasks[1].native[0] == worker_loop.CALL
        threads.run(tasks)
    finally:
        kernels.set_threads(1)
    assert [a.tolist() for a in averages] == [[0.5] * 5, [1.0] * 5, [1.5] * 5]


@pytest.mark.parametrize("n", [2, 3])
def test_split_products_match_numpy(split_everything, n):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((41, 13)).astype(np.float32)
    b = rng.standard_normal((13, 17)).astype(np.float32)
    c = rng.standard_normal((17, 41)).astype(np.float32)
    d = rng.standard_normal((17, 13)).astype(np.float32)
    e = rng.standard_normal((13, 29)).astype(np.float32)
    kernels.set_threads(n)
    # Tall products in row blocks, wide ones (fewer rows than columns) and transposed right factors in
    # column blocks; left factors C- and Fortran-ordered.
    forms = ["rows", "columns", "columns", "rows", "columns", "columns"]
    for (left, right), form in zip([(a, b), (c.T, b.T), (a, d.T), (c.T, c), (d, e), (b.T, e)], forms):
        how, blocks, _ = matmul_cpu.plan(left, right)
        assert (how, len(blocks)) == (form, n)
        assert matmul_cpu.plan(left, right, split=False)[:2] == ("whole", [(0, left.shape[0])])
        expected = left.astype(np.float64) @ right.astype(np.float64)
        np.testing.assert_allclose(kernels.matmul(left, right), expected, rtol=1e-4, atol=1e-4)
        out = np.full(expected.shape, np.nan, np.float32)
        assert kernels.matmul(left, right, out=out) is out
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    pair = kernels.matmuls([(a, b, None), (c.T, b.T, np.empty((41, 13), np.float32))])
    for got, (left, right) in zip(pair, [(a, b), (c.T, b.T)]):
        np.testing.assert_allclose(got, left @ right, rtol=1e-4, atol=1e-4)
    assert kernels.matmuls([]) == []


def test_products_too_small_for_a_hand_over_stay_on_the_calling_thread(monkeypatch):
    if not blas.settable():
        pytest.skip("the BLAS's thread count cannot be held here: products run on its own threads")
    handed = []
    run = threads.run
    monkeypatch.setattr(threads, "run", lambda tasks: (handed.append(len(tasks)), run(tasks))[1])
    kernels.set_threads(2)
    try:
        rng = np.random.default_rng(0)
        for m, k, n, expected in [(100, 16, 500, []), (100, 100, 100, [2]), (100, 32, 500, [2])]:
            # A dense layer's two gradients, 2 m k n multiply-adds and adds each (MIN_SIDE_BY_SIDE: 2e6).
            g, W, x = (rng.standard_normal(s, dtype=np.float32) for s in ((m, n), (k, n), (m, k)))
            handed.clear()
            gx, gW = kernels.matmuls([(g, W.T, None), (x.T, g, None)])
            assert handed == expected, (m, k, n)
            with blas.one_thread():  # NumPy's products on one BLAS thread, as gvae's are: the same bits
                np.testing.assert_array_equal(gx, g @ W.T)
                np.testing.assert_array_equal(gW, x.T @ g)
    finally:
        kernels.set_threads(1)



def test_a_tiny_likelihood_stays_whole_and_step_sized_ones_are_split(monkeypatch):
    """At two threads a 10 x 784 likelihood runs on the calling thread (under two blocks' worth of work,
    threads.MIN_BLOCK_SECONDS), and the 100 x 784 one of an ELBO step and the 500 x 784 one of an IWAE k = 5
    step in two blocks (on the 2-core Xeon, through these Python calls: 74-76 us against 94-101 whole, and
    120 against 190 at 200 rows); either way the same values as one thread's."""
    handed = []
    run = threads.run
    monkeypatch.setattr(threads, "run", lambda tasks: (handed.append(len(tasks)), run(tasks))[1])
    monkeypatch.setattr(threads, "WAKE_SECONDS", 0.0)  # handed over whether the worker sleeps or not
    rng = np.random.default_rng(3)
    for rows, samples, expected in [(10, 1, []), (100, 1, [2]), (100, 5, [2])]:
        x = (rng.random((rows, 784)) < 0.2).astype(np.float32)
        logits = rng.standard_normal((samples, rows, 784), dtype=np.float32)  # samples sharing x
        values = []
        for count in (1, 2):
            kernels.set_threads(count)
            try:
                handed.clear()
                values.append(kernels.bernoulli_loglik(logits, x, want_grad=True))
                assert handed == (expected if count == 2 else []), (rows, samples, count)
            finally:
                kernels.set_threads(1)
        np.testing.assert_array_equal(values[0][0], values[1][0])
        np.testing.assert_array_equal(values[0][1], values[1][1])


def test_small_blocks_do_not_wake_a_sleeping_worker(monkeypatch):
    """Blocks each under threads.WAKE_SECONDS (a 100 x 784 likelihood's two) go to the workers only if those
    they need are started and spinning (after 2 ms of idle a wake-up cost 50-600 us on the 2-core VM,
    against a 95 us call); a recording always hands them over (its replays hold the workers awake), and
    blocks worth WAKE_SECONDS wake them. Run here, the same blocks give the same values."""
    from types import SimpleNamespace
    kernels.set_threads(2)
    try:
        small, large = threads.row_blocks(100, 784, 1e-9), threads.row_blocks(100_000, 784, 1e-9)
        assert len(small) == 2 and small.seconds < threads.WAKE_SECONDS <= large.seconds
        for workers, expected in [([SimpleNamespace(sleeping=True)], False), ([SimpleNamespace(sleeping=False)], True),
                                  ([], False)]:
            with monkeypatch.context() as patch:  # stand-in workers, gone before set_threads stops the real ones
                patch.setattr(RUNTIME, "workers", workers)
                assert threads.worth_waking(small) is expected
                assert threads.worth_waking(large) is True
                assert threads.worth_waking(list(small)) is True  # blocks of unknown worth: as before
                with programs.recording():
                    assert threads.worth_waking(small) is True

        handed = []
        run = threads.run
        monkeypatch.setattr(threads, "run", lambda tasks: (handed.append(len(tasks)), run(tasks))[1])
        rng = np.random.default_rng(4)
        x = (rng.random((100, 784)) < 0.2).astype(np.float32)
        logits = rng.standard_normal((1, 100, 784), dtype=np.float32)
        with monkeypatch.context() as patch:
            patch.setattr(RUNTIME, "workers", [SimpleNamespace(sleeping=True)])
            here = kernels.bernoulli_loglik(logits, x, want_grad=True)
        assert handed == []
    finally:
        kernels.set_threads(1)
    whole = kernels.bernoulli_loglik(logits, x, want_grad=True)
    np.testing.assert_array_equal(here[0], whole[0])
    np.testing.assert_array_equal(here[1], whole[1])


def _operands(rng, dtype):
    """(a, b) pairs in the layouts the step's blocks have: C-ordered, transposed views, and column and
    row blocks of larger arrays (leading dimensions beyond the block)."""
    a = rng.standard_normal((23, 31)).astype(dtype)
    b = rng.standard_normal((31, 40)).astype(dtype)
    return [(a, b), (b.T[:, :23], a[:, :17]), (a[:, 3:20], b[3:20, 5:33]), (a[4:19], b.T.copy().T),
            (np.asfortranarray(a), b[:, 7:9])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_workers_product_is_one_blas_call_equal_to_numpys(dtype):
    """A block a worker computes runs as one cblas call from its native loop, never through Python, and
    gives NumPy's matmul of the same operands bit for bit."""
    if blas.gemm_address(np.dtype(dtype)) is None:
        pytest.skip("NumPy's BLAS here is not an ILP64 OpenBLAS")
    rng = np.random.default_rng(3)
    called = []
    kernels.set_threads(2)
    try:
        for a, b in _operands(rng, dtype):
            outs = [np.full((a.shape[0], b.shape[1]), np.nan, dtype) for _ in range(2)]
            tasks = [matmul_cpu._Product(a, b, out) for out in outs]
            assert tasks[1].native is not None and tasks[1].native[0] in (worker_loop.GEMM32, worker_loop.GEMM64)

            class Watched(matmul_cpu._Product):
                def __call__(self):
                    called.append(threading.get_ident())
                    super().__call__()
            threads.run([Watched(a, b, outs[0]), Watched(a, b, outs[1])])
            np.testing.assert_array_equal(outs[1], np.matmul(a, b))
            np.testing.assert_array_equal(outs[0], outs[1])
    finally:
        kernels.set_threads(1)
    assert set(called) == {threading.get_ident()} and len(called) == 5  # only the caller's blocks


def _vector_operands(rng, dtype):
    """Products of a matrix and a vector, the matrix in C order or transposed, the vector contiguous or
    strided, the output a column or row of a wider array, from one item to sizes NumPy's BLAS splits."""
    for m, k in [(2, 1), (7, 3), (100, 500), (37, 1000), (500, 100), (1000, 2000)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        c = rng.standard_normal((k + 3, m)).astype(dtype)[:k]
        x = rng.standard_normal((k, 3)).astype(dtype)
        out = np.full((m, 2), np.nan, dtype)
        yield a, x[:, :1], out[:, 1:]               # (m, k) @ (k, 1), the vector strided, the output too
        yield c.T, x[:, 2:], out[:, :1]             # a transposed matrix
        yield x[:, 1:2].T, c, np.full((1, m), np.nan, dtype)      # (1, k) @ (k, m)
        yield np.ascontiguousarray(x[:, 0])[None], a.T, out.T[1:]  # (1, k) @ a transposed one, out a row


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_workers_matrix_vector_product_is_one_gemv_call_equal_to_numpys(dtype):
    """A matrix times a vector (NumPy's matmul calls gemv for it) runs on a worker as one cblas gemv call
    from its native loop, and gives NumPy's matmul bit for bit, whatever the layouts."""
    if blas.gemv_address(np.dtype(dtype)) is None:
        pytest.skip("NumPy's BLAS here is not an ILP64 OpenBLAS")
    kinds = (worker_loop.GEMV32, worker_loop.GEMV64)
    called = []

    class Watched(matmul_cpu._Product):
        def __call__(self):
            called.append(threading.get_ident())
            super().__call__()
    kernels.set_threads(2)
    try:
        for a, b, out in _vector_operands(np.random.default_rng(5), dtype):
            mine = np.full(out.shape, np.nan, dtype)
            tasks = [Watched(a, b, mine), Watched(a, b, out)]
            assert tasks[1].native is not None and tasks[1].native[0] in kinds
            threads.run(tasks)  # task 1 on the worker, natively
            np.testing.assert_array_equal(out, np.matmul(a, b))
            np.testing.assert_array_equal(mine, out)
    finally:
        kernels.set_threads(1)
    assert set(called) == {threading.get_ident()} and len(called) == 24  # only the caller's tasks


@pytest.mark.slow
def test_the_blas_kernels_are_named_as_openblas_chose_them():
    """blas.core() names the kernels OpenBLAS loaded with (the benchmarks print it): here forced by
    $OPENBLAS_CORETYPE, which it reads when it loads, in a new process."""
    if blas.core() is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS that names its kernels")
    if platform.machine() != "x86_64":
        pytest.skip("the kernel names forced here are x86's")
    code = "import numpy; from gvae.kernels.cpu import blas; print(blas.core())"
    env = dict(os.environ, OPENBLAS_CORETYPE="Nehalem")  # SSE4.2 kernels, which every x86-64 CPU in use runs
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Nehalem"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [blas.core()]  # this process's environment, this process's kernels


def test_what_the_blas_cannot_take_as_it_is_goes_through_numpy(monkeypatch):
    """No native form (so a worker calls NumPy's matmul) for strides the BLAS cannot take, empty
    products, a vector times a vector and a @ a.T (where NumPy calls dot or syrk), an out that overlaps a
    factor, and a BLAS without an ILP64 cblas_sgemm (or cblas_sgemv, for a matrix times a vector); the
    products are still NumPy's on two threads."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((12, 10)).astype(np.float32)
    b = rng.standard_normal((10, 16)).astype(np.float32)
    big = np.zeros((12, 22), np.float32)
    cases = [(a[:, ::2], b[::2]), (a[:, :0], b[:0]), (a, b[:, 2:2]), (a[5:6], b[:, 3:4]), (a, a.T),
             (a[:, ::2], b[::2, 3:4]), (a[5:6], np.broadcast_to(b[:1], b.shape))]
    for left, right in cases:
        assert matmul_cpu._Product(left, right, np.empty((left.shape[0], right.shape[1]), np.float32)).native is None
    assert matmul_cpu._Product(big[:, :10], b, big[:, 6:22]).native is None  # out overlaps a
    monkeypatch.setattr(blas, "gemv_address", lambda dtype: None)
    assert matmul_cpu._Product(a, b[:, 3:4], np.empty((12, 1), np.float32)).native is None
    monkeypatch.setattr(blas, "gemm_address", lambda dtype: None)
    assert matmul_cpu._Product(a, b, np.empty((12, 16), np.float32)).native is None
    kernels.set_threads(2)
    try:
        for left, right in cases + [(a, b)]:
            outs = [np.empty((left.shape[0], right.shape[1]), np.float32) for _ in range(2)]
            threads.run([matmul_cpu._Product(left, right, out) for out in outs])
            np.testing.assert_array_equal(outs[0], np.matmul(left, right))
            np.testing.assert_array_equal(outs[1], outs[0])
    finally:
        kernels.set_threads(1)


def _worker_seconds(worker):
    return time.clock_gettime(time.pthread_getcpuclockid(worker.thread.ident))


@pytest.mark.skipif(not hasattr(time, "pthread_getcpuclockid"), reason="no per-thread CPU clock here")
def test_an_idle_worker_sleeps_and_wakes_for_the_next_call():
    """A worker spins only briefly after its last task: then it sleeps (using no CPU), and the next call
    wakes it and runs on it."""
    kernels.set_threads(2)
    try:
        threads.run([lambda: None, lambda: None])
        worker = RUNTIME.workers[0]
        deadline = time.monotonic() + 10
        while not worker.sleeping and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.sleeping
        before = _worker_seconds(worker)
        time.sleep(0.3)
        assert _worker_seconds(worker) - before < 0.03
        ran = []
        threads.run([lambda: None, lambda: ran.append(threading.get_ident())])
        assert ran == [worker.thread.ident]
    finally:
        kernels.set_threads(1)


def test_fewer_threads_stop_the_workers_beyond_them():
    kernels.set_threads(3)
    try:
        threads.run([lambda: None] * 3)
        started = [worker.thread for worker in RUNTIME.workers]
        assert len(started) == 2
        kernels.set_threads(2)
        started[1].join(10)
        assert not started[1].is_alive() and started[0].is_alive()
        out = []
        threads.run([lambda: out.append(0), lambda: out.append(1)])
        assert sorted(out) == [0, 1]
    finally:
        kernels.set_threads(1)
    started[0].join(10)
    assert not started[0].is_alive()


def test_products_refuse_bad_arguments():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="a \\(M, K\\) and b \\(K, N\\)"):
        kernels.matmul(a, a)
    with pytest.raises(ValueError, match="out must be C-contiguous float32 of shape \\(3, 3\\)"):
        kernels.matmul(a, a.T, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="one dtype"):
        kernels.matmul(a, a.T.astype(np.float64))


@pytest.fixture
def blas_on_two_threads():
    """(get, set) of NumPy's OpenBLAS thread count, set to 2 for the test (as a process that loaded NumPy
    without OPENBLAS_NUM_THREADS has it on a 2-core machine) and restored after; skips elsewhere."""
    controls = blas._controls()
    if controls is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS whose thread count can be read")
    get, put = controls
    before = get()
    put(2)
    yield get, put
    put(before)
    kernels.set_threads(1)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_each_blas_call_runs_on_one_thread_and_the_count_is_restored(split_everything, blas_on_two_threads,
                                                                     monkeypatch, n_threads):
    """gvae's products hold the BLAS to one thread, on one gvae thread as on two (a product of the
    process's multi-threaded OpenBLAS rounded otherwise), and give it back after."""
    get, _put = blas_on_two_threads
    seen = []

    class Spy:  # NumPy, with the BLAS's thread count noted at each call
        def __getattr__(self, name):
            return getattr(np, name)

        def matmul(self, *args, **kwargs):
            seen.append(get())
            return np.matmul(*args, **kwargs)

    monkeypatch.setattr(matmul_cpu, "np", Spy())
    kernels.set_threads(n_threads)
    a = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    np.testing.assert_allclose(kernels.matmul(a, a), a @ a, rtol=1e-5, atol=1e-5)
    kernels.matmuls([(a, a, None), (a.T, a, None)])
    assert kernels.sum_squares(a.reshape(-1)) == pytest.approx(float(np.sum(a.astype(np.float64) ** 2)), rel=1e-6)
    assert len(seen) >= 2 and set(seen) == {1}  # a worker's blocks are cblas calls, not NumPy's
    assert get() == 2


def _child_blas_count(queue):
    get, _put = blas._controls()
    before = get()
    with blas.one_thread():  # the lock is free in the child
        inside = get()
    queue.put((before, inside, get()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_child_forked_inside_a_blas_hold_gets_the_count_back(blas_on_two_threads):
    """Forked while another thread holds the BLAS at one thread (a gvae call in a thread of a program
    that forks): the child starts with the count the hold would have restored, and can hold it again."""
    get, _put = blas_on_two_threads
    entered, release = threading.Event(), threading.Event()

    def holder():
        with blas.one_thread():
            entered.set()
            release.wait(30)
    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert entered.wait(30) and get() == 1
        assert in_forked_child(_child_blas_count) == (2, 1, 2)
    finally:
        release.set()
        thread.join()
    assert get() == 2


def test_a_step_from_python_is_the_same_whatever_the_processs_blas_threads(blas_on_two_threads, tmp_path):
    """A hostile setting outside gvae: the process's OpenBLAS on two threads (NumPy imported before gvae
    could set anything, as in a notebook) while gvae runs on one. The steps equal, bit for bit, those
    of a process whose BLAS has one thread (what ``gvae train --threads 1`` sets before NumPy loads)."""
    from gvae.training import TrainConfig, Trainer
    _get, put = blas_on_two_threads
    x = (np.random.default_rng(0).random((100, 784)) < 0.3).astype(np.float32)
    data = {s: (x, np.zeros(100, np.int64)) for s in ("train", "valid", "test")}
    kernels.set_threads(1)
    params = {}
    for blas_threads in (1, 2):
        put(blas_threads)
        cfg = TrainConfig(latent=4, hidden=(64,), posterior="chain", batch_size=50, seed=5)
        trainer = Trainer(cfg, data, tmp_path / f"blas{blas_threads}", progress=False, quiet=True)
        for i in range(6):
            trainer.step(x[i % 2 * 50:(i % 2 + 1) * 50], 1.0)
        params[blas_threads] = trainer.state.params.flat.copy()
    np.testing.assert_array_equal(params[1], params[2])


def test_a_training_step_on_two_threads_matches_one(split_everything, tmp_path):
    from gvae.training import TrainConfig, Trainer
    rng = np.random.default_rng(0)
    x = (rng.random((60, 20)) < 0.3).astype(np.float32)
    data = {s: (x, np.zeros(60, np.int64)) for s in ("train", "valid", "test")}
    losses = {}
    for n in (1, 2):
        kernels.set_threads(n)
        cfg = TrainConfig(latent=4, hidden=(8,), posterior="chain", iw_samples=3, batch_size=20, seed=5)
        trainer = Trainer(cfg, data, tmp_path / f"t{n}", progress=False, quiet=True)
        losses[n] = [trainer.step(x[i * 20:(i + 1) * 20], 1.0)[0] for i in range(3)]
    np.testing.assert_allclose(losses[1], losses[2], rtol=1e-5)


@pytest.mark.parametrize("posterior,iw", [("diagonal", 1), ("diagonal", 5), ("extgrid", 1)])
def test_a_two_thread_training_step_hands_its_worker_no_python_task(monkeypatch, tmp_path, posterior, iw):
    """In the README's training step (784-500-500-16, batch 100, products cut by the rules) every block a
    worker is handed runs natively, a product's BLAS call or a C entry: the worker never takes the GIL."""
    from gvae.kernels.cpu import tuning
    from gvae.training import TrainConfig, Trainer
    posted = []
    post = threads._Worker.post
    monkeypatch.setattr(threads._Worker, "post",
                        lambda self, task, native=None: posted.append(None if native is None else native[0])
                        or post(self, task, native))
    rng = np.random.default_rng(1)
    x = (rng.random((100, 784)) < 0.13).astype(np.float32)
    data = {s: (x, np.zeros(100, np.int64)) for s in ("train", "valid", "test")}
    before = tuning.active()
    tuning.set_tuning(False)
    kernels.set_threads(2)
    try:
        cfg = TrainConfig(posterior=posterior, latent=16, hidden=(500, 500), activation="elu", iw_samples=iw,
                          batch_size=100, seed=2)
        trainer = Trainer(cfg, data, tmp_path / "run", progress=False, quiet=True)
        for _ in range(2):
            assert trainer.step(x, 1.0) is not None
    finally:
        kernels.set_threads(1)
        tuning.set_tuning(before)
    kinds = set(posted) - {worker_loop.QUIT}
    # (NOOP: the wake-up a replay posts to a sleeping worker; the second step's record is run by the
    # check of its packing, gvae/kernels/cpu/buffer_plan.py)
    assert worker_loop.CALL in kinds and kinds <= {worker_loop.GEMM32, worker_loop.CALL, worker_loop.NOOP}, kinds


def test_training_from_python_uses_every_core_unless_set_threads_chose(monkeypatch, tmp_path):
    """Trainer.fit (and so gvae.train) runs on one kernel thread per available core, as the command does,
    unless set_threads was called; the count before is back after."""
    from gvae.training import TrainConfig, Trainer
    monkeypatch.setattr(RUNTIME, "threads", 1)
    monkeypatch.setattr(RUNTIME, "threads_set", False)  # as in a fresh process
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    seen = []
    real_epoch = Trainer.run_epoch
    monkeypatch.setattr(Trainer, "run_epoch", lambda self: seen.append(kernels.get_threads()) or real_epoch(self))
    rng = np.random.default_rng(0)
    x = (rng.random((40, 20)) < 0.3).astype(np.float32)
    data = {s: (x, np.zeros(40, np.int64)) for s in ("train", "valid", "test")}
    cfg = TrainConfig(latent=2, hidden=(4,), epochs=1, batch_size=20)
    Trainer(cfg, data, tmp_path / "default", progress=False, quiet=True).fit(events=[])
    assert seen == [3] and kernels.get_threads() == 1 and not RUNTIME.threads_set
    kernels.set_threads(2)  # a choice stands
    Trainer(cfg, data, tmp_path / "chosen", progress=False, quiet=True).fit(events=[])
    assert seen == [3, 2] and kernels.get_threads() == 2
    kernels.set_threads(1)


def test_threads_unless_set_is_the_count_inside_cores_unless_set(monkeypatch):
    monkeypatch.setattr(RUNTIME, "threads", 1)
    monkeypatch.setattr(RUNTIME, "threads_set", False)  # as in a fresh process
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    with threads.cores_unless_set():
        inside = kernels.get_threads()
    assert threads.threads_unless_set() == inside == 3 and kernels.get_threads() == 1
    kernels.set_threads(2)  # a choice stands
    try:
        with threads.cores_unless_set():
            assert threads.threads_unless_set() == kernels.get_threads() == 2
    finally:
        kernels.set_threads(1)


def test_concurrent_cores_unless_set_leave_the_process_count_alone(monkeypatch):
    """Two threads inside cores_unless_set at once (A enters, B enters, A leaves, B leaves: the order in
    which a save-and-restore of one process-wide count leaves B's saved 3 behind). Each sees its cores;
    a third thread sees the process's count meanwhile, and it is the same after."""
    monkeypatch.setattr(RUNTIME, "threads", 1)
    monkeypatch.setattr(RUNTIME, "threads_set", False)  # as in a fresh process
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    a_in, b_in, looked = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with threads.cores_unless_set():
            seen["a"] = kernels.get_threads()
            a_in.set()
            assert b_in.wait(10) and looked.wait(10)
        seen["a after"] = kernels.get_threads()

    def second():
        assert a_in.wait(10)
        with threads.cores_unless_set():
            seen["b"] = kernels.get_threads(), threads.threads_unless_set()
            b_in.set()
            a.join(10)  # A leaves while B is still inside
        seen["b after"] = kernels.get_threads()

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    assert b_in.wait(10)
    outside = threading.Thread(target=lambda: seen.setdefault("outside", kernels.get_threads()))
    outside.start()
    outside.join(10)
    seen["main"] = kernels.get_threads()
    looked.set()
    a.join(10)
    b.join(10)
    assert seen == {"a": 3, "b": (3, 3), "outside": 1, "main": 1, "a after": 1, "b after": 1}
    assert kernels.get_threads() == 1 and RUNTIME.threads == 1 and not RUNTIME.threads_set


def test_two_trainers_at_once_leave_the_thread_count_as_it_was(monkeypatch, tmp_path):
    """Issue 50: two Trainers fitting at once in two threads left the process's count at the cores
    count for good. Each fits on the cores count; the count before is back after, whichever leaves last."""
    from gvae.training import TrainConfig, Trainer
    monkeypatch.setattr(RUNTIME, "threads", 1)
    monkeypatch.setattr(RUNTIME, "threads_set", False)
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    a_in, b_in = threading.Event(), threading.Event()
    seen, failures = {}, []
    real_epoch = Trainer.run_epoch

    def epoch(self):
        seen[self.name] = kernels.get_threads()
        if self.name == "a":  # A is inside first, and waits for B to be inside too
            a_in.set()
            assert b_in.wait(60)
        else:  # B stays inside until A has finished
            b_in.set()
            first.join(60)
        return real_epoch(self)
    monkeypatch.setattr(Trainer, "run_epoch", epoch)
    rng = np.random.default_rng(0)
    x = (rng.random((40, 20)) < 0.3).astype(np.float32)
    data = {s: (x, np.zeros(40, np.int64)) for s in ("train", "valid", "test")}
    cfg = TrainConfig(latent=2, hidden=(4,), epochs=1, batch_size=20)

    def fit(name):
        try:
            trainer = Trainer(cfg, data, tmp_path / name, progress=False, quiet=True)
            trainer.name = name
            trainer.fit(events=[])
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)
            a_in.set()
            b_in.set()

    first = threading.Thread(target=fit, args=("a",))
    second = threading.Thread(target=fit, args=("b",))
    first.start()
    assert a_in.wait(60)
    second.start()
    first.join(60)
    second.join(60)
    assert not failures, failures
    assert seen == {"a": 3, "b": 3}
    assert kernels.get_threads() == 1 and not RUNTIME.threads_set


def test_a_thread_inside_cores_unless_set_splits_over_its_own_count(monkeypatch):
    """While the process's count is 1, a thread inside cores_unless_set grows the pool to its count and
    splits its calls over it; its tasks on the workers see that count; a thread outside runs its calls
    whole. A set_threads made meanwhile holds in that thread too (the choice stands)."""
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    kernels.set_threads(1)  # no workers left from other tests
    monkeypatch.setattr(RUNTIME, "threads_set", False)  # as in a fresh process
    counts, names = [], []

    def task():
        counts.append(kernels.get_threads())
        names.append(threading.current_thread().name)
    try:
        threads.run([task] * 3)
        assert counts == [1] * 3 and len(set(names)) == 1 and not RUNTIME.workers
        counts.clear()
        names.clear()
        inside, chosen, seen = threading.Event(), threading.Event(), {}

        def in_context():
            with threads.cores_unless_set():
                threads.run([task] * 3)
                seen["workers"] = len(RUNTIME.workers)
                inside.set()
                assert chosen.wait(10)
                seen["after set_threads"] = kernels.get_threads(), threads.threads_unless_set()
        other = threading.Thread(target=in_context)
        other.start()
        assert inside.wait(10)
        seen["outside"] = kernels.get_threads()
        kernels.set_threads(2)
        chosen.set()
        other.join(10)
        assert counts == [3] * 3 and len(set(names)) == 3
        assert seen == {"workers": 2, "outside": 1, "after set_threads": (2, 2)}
    finally:
        kernels.set_threads(1)


@pytest.mark.parametrize("items,step,parts", [(10, 1, 3), (10, 8, 3), (17, 8, 2), (7, 8, 4), (64, 8, 16), (1, 1, 5)])
def test_band_chunks_cover_the_items_at_multiples_of_the_step(items, step, parts):
    from gvae.kernels.band.driver_cpu import chunks
    cut = chunks(items, step, parts)
    assert cut[0][0] == 0 and cut[-1][1] == items and len(cut) <= parts
    assert all(a[1] == b[0] and a[1] % step == 0 for a, b in zip(cut, cut[1:]))
    assert all(hi > lo for lo, hi in cut)


def test_the_band_kernels_on_three_threads_give_what_one_gives(monkeypatch):
    """Calls above the band driver's work threshold run in chunks on gvae's threads (blocks of 8 factors
    for the selected inversion): bitwise the result of one thread, and really split."""
    from gvae.kernels.band import driver_cpu
    splits = []
    chunks = driver_cpu.chunks
    monkeypatch.setattr(driver_cpu, "chunks", lambda *a: splits.append(len(chunks(*a))) or chunks(*a))
    rng = np.random.default_rng(5)
    offsets, n, F = (0, 1, 70, 71, 72), 150, 61  # a partial last block of 8
    L = random_factor(rng, (F,), offsets, n)
    b = rng.standard_normal((20, F, n))
    g = rng.uniform(0.5, 1.5, size=(F, n))
    calls = [lambda f=f: f(L, offsets, b) for f in (kernels.band_solve_t, kernels.band_solve, kernels.band_matvec_t,
                                                   kernels.band_matvec)]
    calls += [lambda: kernels.band_outer(b, b[::-1], offsets, (F,)), lambda: kernels.band_trace_inv(L, offsets),
              lambda: kernels.band_diag_inv(L, offsets), lambda: kernels.band_trace_inv_grad(L, offsets, g[:, 0]),
              lambda: kernels.band_diag_inv_grad(L, offsets, g)]
    results = {}
    try:
        for count in (1, 3):
            kernels.set_threads(count)
            results[count] = [call() for call in calls]
    finally:
        kernels.set_threads(1)
    assert splits == [1] * len(calls) + [3] * len(calls), splits  # every call past the threshold
    for one, three in zip(results[1], results[3]):
        np.testing.assert_array_equal(one, three)


def test_a_workers_python_task_runs_under_its_callers_floating_point_error_state():
    """np.errstate is the calling thread's own; a Python task handed to a worker takes the caller's, so a
    Trainer's silenced overflows stay silent on its workers and nobody else's warnings are touched."""
    seen = []

    def task():
        seen.append(np.geterr()["over"])

    before = kernels.get_threads()
    kernels.set_threads(2)
    try:
        for mode in ("ignore", "raise"):
            seen.clear()
            with np.errstate(over=mode):
                threads.run([task, task])
            assert seen == [mode, mode]
        assert np.geterr()["over"] == "warn"
    finally:
        kernels.set_threads(before)

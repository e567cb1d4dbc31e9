"""The scratch memory of band_trace_inv_grad stays within its docstring's bound: while all the rows of
Sigma of a lock-step block fit 256 MiB (n (w+1) float64 per lane, 8 lanes, else one), they are kept; past
that the sweep keeps them in segments (a checkpointed sweep) whose rows fit, and gives the same result."""
import subprocess
import sys

import numpy as np
import pytest

from gvae import kernels
from gvae.kernels.band import selected_inversion_cpu as inversion
from tests.band_reference import diag_inv_grad_ref, random_factor, trace_inv_grad_ref, trace_inv_ref

_PEAK = """
import resource
import numpy as np
from gvae import kernels
from tests.band_reference import random_factor
offs = (0, 1, 500)
rng = np.random.default_rng(0)
kernels.band_trace_inv_grad(random_factor(rng, (1,), offs, 9000), offs, np.ones(1))  # compile or load the one-lane path
L = random_factor(rng, (1,), offs, 20000)
g = np.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kernels.band_trace_inv_grad(L, offs, g)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
def test_one_factor_gradient_peak_memory_within_bound():
    out = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, check=True)
    increase = int(out.stdout.split()[-1]) * 1024
    bound = 20000 * 502 * 8  # n (w+1) float64, w+1 = 501 rounded up to even: ~80 MB
    assert increase < 2.5 * bound, (increase, bound)


@pytest.mark.parametrize("offsets,n", [((0, 1, 3), 20), ((0, 1, 4, 5, 6), 30), ((0, 2, 7), 25),
                                       ((0, 1, 5, 6, 7, 9), 19)])
@pytest.mark.slow
def test_one_lane_and_eight_lane_blocks_match_dense(offsets, n):
    """Both widths of the gradient's lock-step recursion (the dispatch picks one lane only for bands past
    the memory budget, too large for a dense reference, so each variant is called here directly), and the
    dispatching kernels, on batches that fill blocks of 8, leave a partial last block, or hold one factor."""
    rng = np.random.default_rng(n)
    offs = np.array(offsets, dtype=np.int64)
    for F in (1, 2, 7, 8, 11):
        L = random_factor(rng, (F,), offsets, n)
        g = rng.uniform(0.5, 1.5, size=F)
        np.testing.assert_allclose(kernels.band_trace_inv(L, offsets), trace_inv_ref(L, offsets), rtol=1e-12)
        expected = g[:, None, None] * trace_inv_grad_ref(L, offsets)
        tol = dict(rtol=1e-11, atol=1e-12 * np.max(np.abs(expected)))
        np.testing.assert_allclose(kernels.band_trace_inv_grad(L, offsets, g), expected, **tol)
        for variant in (inversion._grad_blocks_x1, inversion._grad_blocks_x8):
            out = np.zeros_like(L)
            variant(L, offs, g[:, None], out, 0, F, n)
            np.testing.assert_allclose(out, expected, **tol, err_msg=variant.__name__)


# The peak resident memory of one gradient call over what the process held before it (the kernel's
# page high-water mark reset through /proc/self/clear_refs, so an earlier peak cannot hide it), and
# sum(L * dtr/dL) + 2 tr(Sigma), zero up to rounding: tr(Sigma) is homogeneous of degree -2 in L.
_PEAK_SEGMENTED = """
import numpy as np
from gvae import kernels
from tests.band_reference import random_factor
offs, n = (0, 1, 200), 200000
rng = np.random.default_rng(0)
kernels.band_trace_inv_grad(random_factor(rng, (1,), offs, 1000), offs, np.ones(1))  # compile or load
L = random_factor(rng, (1,), offs, n, garbage=0.0)
g = np.ones(1)
def status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
gL = kernels.band_trace_inv_grad(L, offs, g)
print(status("VmHWM") - before)
tr = kernels.band_trace_inv(L, offs)[0]
print(abs(np.sum(L * gL) + 2 * tr) / tr)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/clear_refs and VmHWM")
def test_gradient_scratch_stays_within_budget_past_it():
    """n = 2 10^5, w = 200: all the rows of Sigma would take 323 MB (n * 202 float64), past the 256 MiB
    budget (322 MiB measured before the segmented sweep); the sweep keeps 100,400 of them (162 MB; 169 MiB
    measured). 1-3 s with the subprocess: about the smallest band whose rows overflow the budget."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SEGMENTED], capture_output=True, text=True, check=True)
    increase, euler = out.stdout.split()[-2:]
    n = 200000
    other = 12 * n * 3 * 8  # staged factor, gradient, diagonals, weights and the result: O(n K)
    assert int(increase) < inversion._SCRATCH_MAX + other, (int(increase), inversion._SCRATCH_MAX + other)
    assert float(euler) < 1e-9


def _rows(n, W, ks):
    m = -(-n // ks)
    return (m - 1) * (W - 1) + min(ks + W - 1, n)


@pytest.mark.parametrize("n,W,lanes", [(784, 29, 8), (20000, 501, 1), (200000, 201, 1), (10**5, 1001, 1),
                                       (10**6, 1001, 1), (3 * 10**7, 1, 1), (10**6, 2, 1)])
def test_segment_rows_fit_the_budget_or_keep_the_fewest_rows(n, W, lanes):
    fit = inversion._SCRATCH_MAX // (inversion._pitch(W) * lanes * 8)
    ks = inversion._segment_rows(n, W, lanes)
    rows = {m: _rows(n, W, -(-n // m)) for m in range(1, min(n, 20000) + 1)}
    if n <= fit:
        assert ks == n  # every row kept: no sweep repeated
    elif min(rows.values()) <= fit:  # the fewest segments that fit
        m = -(-n // ks)
        assert _rows(n, W, ks) <= fit and all(rows[j] > fit for j in range(1, m))
    else:  # none fits: the fewest rows, O(sqrt(n w)) against n
        assert _rows(n, W, ks) == min(rows.values()) < 3 * np.sqrt(n * W) + W


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets,ks,sizes", [
    ((0,), 3, (1, 2, 3, 4, 7)),                   # no off-diagonal: w = 0
    ((0, 1, 3), 5, (4, 5, 6, 10, 11, 16)),        # grid-like, ks > w
    ((0, 2, 7), 7, (8, 13, 14, 15, 21, 22)),      # ks = w
    ((0, 1, 4, 5, 6), 2, (7, 8, 9, 13)),          # extended-grid-like, ks < w: segments shorter than a window
    ((0, 3), 4, (4, 7, 8, 9, 12, 13)),            # two diagonals, each row its own terms
    ((0, 1, 5, 6, 7, 9), 9, (10, 17, 18, 19, 28)),
])
@pytest.mark.slow
def test_segmented_sweep_matches_one_segment_and_dense(offsets, ks, sizes, dtype):
    """The gradient's sweep in segments of ks rows (n around multiples of ks: n < ks, n = ks - 1, ks,
    ks + 1, several ks) gives bitwise the result of one segment (every row kept), on one lane and on
    8, and matches the dense reference; per-row weights g (the diagonal's gradient) and one per factor
    (the trace's)."""
    rng = np.random.default_rng(ks)
    offs = np.array(offsets, dtype=np.int64)
    for n in sizes:
        F = 3
        L = random_factor(rng, (F,), offsets, n, dtype)
        for g in (rng.uniform(-1.5, 1.5, size=(F, n)), rng.uniform(0.5, 1.5, size=(F, 1))):
            g = g.astype(dtype)
            expected = diag_inv_grad_ref(L, offsets, np.broadcast_to(g, (F, n)))
            scale = np.max(np.abs(expected))
            for variant in (inversion._grad_blocks_x1, inversion._grad_blocks_x8):
                whole = np.zeros_like(L)
                variant(L, offs, g, whole, 0, F, n)
                for k in sorted({1, ks - 1, ks, ks + 1, 2 * ks} - {0}):
                    out = np.zeros_like(L)
                    variant(L, offs, g, out, 0, F, k)
                    np.testing.assert_array_equal(out, whole, err_msg=f"{variant.__name__} n={n} ks={k}")
                if dtype == np.float64:
                    np.testing.assert_allclose(whole, expected, rtol=1e-10, atol=1e-12 * scale)
                else:
                    np.testing.assert_allclose(whole, expected, rtol=2e-4, atol=1e-5 * scale)

"""The scratch memory of band_trace_inv_grad stays within its docstring's bound: n (w+1) float64 per lane
of a lock-step block, one lane for a batch of fewer than 8 factors (8 lanes would need 8x as much)."""
import subprocess
import sys

import numpy as np
import pytest

from gvae import kernels
from gvae.kernels.band import trace_cpu
from tests.band_reference import random_factor, trace_inv_grad_ref, trace_inv_ref

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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
def test_one_factor_gradient_peak_memory_within_bound():
    out = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, check=True)
    increase = int(out.stdout.split()[-1]) * 1024
    bound = 20000 * 502 * 8  # n (w+1) float64, w+1 = 501 rounded up to even: ~80 MB
    assert increase < 2.5 * bound, (increase, bound)


@pytest.mark.parametrize("offsets,n", [((0, 1, 3), 20), ((0, 1, 4, 5, 6), 30), ((0, 2, 7), 25),
                                       ((0, 1, 5, 6, 7, 9), 19)])
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
        for variant in (trace_cpu._grad_blocks_x1, trace_cpu._grad_blocks_x8):
            out = np.zeros_like(L)
            variant(L, offs, g[:, None], out, 0, F)
            np.testing.assert_allclose(out, expected, **tol, err_msg=variant.__name__)

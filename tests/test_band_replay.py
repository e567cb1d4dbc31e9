"""The band kernels in a recorded program (gvae/kernels/cpu/programs.py): each runs through its C entry,
serially and in chunks on the threads, so that a recording holds it and a replay on new data is a fresh
call's result bit for bit; the band factor's construction and its gradient too. The dense route of wide
bands (no C entry) refuses a recording and says which kernel."""
import numpy as np
import pytest

from gvae import kernels, ops
from gvae.autodiff import grad
from gvae.kernels.cpu import programs

OFFSETS = [(0, 1), (0, 1, 4), (0, 1, 3, 4, 5)]


def _factor(rng, F, offsets, n, dtype):
    L = rng.standard_normal((F, len(offsets), n)) * 0.3
    L[:, 0] = rng.uniform(0.5, 2.0, (F, n))
    return L.astype(dtype)


CALLS = {
    "band_solve_t": lambda L, o, b, g: kernels.band_solve_t(L, o, b, check=False),
    "band_solve": lambda L, o, b, g: kernels.band_solve(L, o, b, check=False),
    "band_matvec_t": lambda L, o, b, g: kernels.band_matvec_t(L, o, b, check=False),
    "band_logdet": lambda L, o, b, g: kernels.band_logdet(L, check=False),
    "band_logdet_grad": lambda L, o, b, g: kernels.band_logdet_grad(L, g, check=False),
    "band_trace_inv": lambda L, o, b, g: kernels.band_trace_inv(L, o, check=False),
    "band_diag_inv": lambda L, o, b, g: kernels.band_diag_inv(L, o, check=False),
    "band_trace_inv_grad": lambda L, o, b, g: kernels.band_trace_inv_grad(L, o, g, check=False),
}


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("offsets", OFFSETS, ids=str)
@pytest.mark.parametrize("name", list(CALLS))
def test_a_band_kernel_is_recorded_and_replayed_on_new_data(split_everything, count, offsets, name):
    kernels.set_threads(count)
    rng = np.random.default_rng(len(offsets))
    F, S, n = 6, 3, 11
    L, b, g = _factor(rng, F, offsets, n, np.float32), rng.standard_normal((S, F, n)).astype(np.float32), \
        rng.standard_normal(F).astype(np.float32)
    with programs.recording() as program:
        out = CALLS[name](L, offsets, b, g)
    assert program.refused is None and len(program) >= 1
    L[...] = _factor(rng, F, offsets, n, np.float32)
    b[...], g[...] = rng.standard_normal(b.shape), rng.standard_normal(g.shape)
    expected = CALLS[name](L, offsets, b, g)
    out[...] = np.nan
    program.run()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("offsets", OFFSETS, ids=str)
def test_the_band_factor_and_the_band_kl_with_their_gradients_replay(split_everything, offsets):
    """The steps of the structured families' KL: L from unconstrained values (a view whose diagonals lie
    apart, as a head's output is), the KL, and the gradient of both with respect to the head."""
    kernels.set_threads(2)
    rng = np.random.default_rng(7)
    K, n, B = len(offsets), 13, 5
    head = 0.3 * rng.standard_normal((B, n + K * n))
    head[:, n:2 * n] += 1.0  # a main diagonal near softplus(1): a KL of moderate size
    mask = np.ones((K - 1, n))
    for k, o in enumerate(offsets[1:]):
        mask[k, :o] = 0.0

    def kl(h):
        raw = ops.reshape(h[:, n:], (B, K, n))
        return ops.sum(ops.band_normal_kl(ops.band_factor(raw, mask, 1e-3), offsets, h[:, :n], check=False))
    dkl = grad(kl)
    with programs.recording() as program:
        got = dkl(head)
    assert program.refused is None
    head[...] = 0.3 * rng.standard_normal(head.shape)
    head[:, n:2 * n] += 1.0
    expected = dkl(head)
    got[...] = np.nan
    program.run()
    np.testing.assert_array_equal(got, expected)
    # and against the dense KL's gradient, by central differences in float64
    eps = 1e-5
    for i in [(1, 4), (2, n + 3), (4, n + (K - 1) * n + n - 1)]:  # a mean, the main diagonal, the last diagonal
        up, down = head.copy(), head.copy()
        up[i] += eps
        down[i] -= eps
        assert expected[i] == pytest.approx((kl(up) - kl(down)) / (2 * eps), rel=1e-6, abs=1e-8)


def test_the_dense_route_records_and_replays_on_new_factors():
    rng = np.random.default_rng(3)
    n, offs = 40, tuple(range(40))
    L = _factor(rng, 2, offs, n, np.float64)  # the full band: the dense inverse (LAPACK and the BLAS)
    g = rng.standard_normal(2)
    with programs.recording() as program:
        trace = kernels.band_trace_inv(L, offs, check=False)
        grad = kernels.band_trace_inv_grad(L, offs, g, check=False)
    assert program.refused is None
    L[...] = _factor(rng, 2, offs, n, np.float64)
    trace[...] = grad[...] = np.nan
    program.run()
    np.testing.assert_array_equal(trace, kernels.band_trace_inv(L, offs, check=False))
    np.testing.assert_array_equal(grad, kernels.band_trace_inv_grad(L, offs, g, check=False))


def test_a_right_hand_side_that_needs_a_transposed_copy_refuses_a_recording_and_says_so():
    """L broadcast over a trailing axis of b: the fronts copy b to the kernels' layout with NumPy, which a
    replay would not redo; the recording is refused (never silently stale)."""
    rng = np.random.default_rng(4)
    L = _factor(rng, 3, (0, 1), 6, np.float64).reshape(3, 1, 2, 6)
    b = rng.standard_normal((3, 4, 6))
    with programs.recording() as program:
        got = kernels.band_solve_t(L, (0, 1), b, check=False)
    assert program.refused is not None and "copy of" in program.refused
    np.testing.assert_allclose(got[1, 2], kernels.band_solve_t(L[1, 0], (0, 1), b[1, 2], check=False), rtol=1e-12)

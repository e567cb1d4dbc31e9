"""Wide bands' diag(Sigma), tr(Sigma) and their gradients by the dense inverse (gvae/kernels/band/
dense_inverse_cpu.py): against the dense NumPy references, against the selected inversion, through the
ops' finite differences, and with bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae import kernels, ops, value_and_grad
from gvae.kernels.band import dense_inverse_cpu, trace
from gvae.kernels.cpu import blas
from tests.band_reference import (dense_from_band, diag_inv_grad_ref, diag_inv_ref, random_factor,
                                  trace_inv_grad_ref, trace_inv_ref)
from tests.gradcheck import check_vjp

pytestmark = pytest.mark.skipif(blas.triangular_addresses() is None,
                                reason="NumPy's BLAS is not an ILP64 OpenBLAS with LAPACKE_dtrtri and "
                                       "cblas_dtrmm: the dense route is never taken here")

RTOL = {np.float32: 2e-4, np.float64: 1e-10}
# (offsets, n) that take the route: full bands at the smallest sizes, a band with gaps, one past n = 64
WIDE = [(tuple(range(32)), 32), (tuple(range(40)), 40), (tuple(range(21)) + tuple(range(30, 48)), 48),
        (tuple(range(36)), 70)]


def _routed(L, offsets):
    return dense_inverse_cpu.addresses(L.reshape((-1,) + L.shape[-2:]), np.array(offsets)) is not None


def _close(actual, expected, dtype):
    rtol = RTOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets,n", WIDE)
def test_wide_bands_match_dense(offsets, n, dtype):
    rng = np.random.default_rng(n + len(offsets))
    for batch in [(), (3,), (2, 3), (17,)]:
        L = random_factor(rng, batch, offsets, n, dtype)
        assert _routed(L, offsets)
        L0 = L.copy()
        tr = kernels.band_trace_inv(L, offsets)
        assert tr.dtype == dtype and tr.shape == batch
        _close(tr, trace_inv_ref(L, offsets), dtype)
        d = kernels.band_diag_inv(L, offsets)
        assert d.dtype == dtype and d.shape == batch + (n,)
        _close(d, diag_inv_ref(L, offsets), dtype)
        g = rng.uniform(0.5, 1.5, size=batch)
        gL = kernels.band_trace_inv_grad(L, offsets, g.astype(dtype))
        assert gL.dtype == dtype and gL.shape == L.shape
        _close(gL, np.asarray(g)[..., None, None] * trace_inv_grad_ref(L, offsets), dtype)
        gd = rng.uniform(-1.5, 1.5, size=batch + (n,))
        gL = kernels.band_diag_inv_grad(L, offsets, gd.astype(dtype))
        _close(gL, diag_inv_grad_ref(L, offsets, gd), dtype)
        for k, o in enumerate(offsets):  # the slots that do not exist hold NaN in L and 0 in the gradient
            assert np.all(gL[..., k, :o] == 0)
        np.testing.assert_array_equal(L, L0)


def test_the_route_and_the_selected_inversion_agree(monkeypatch):
    rng = np.random.default_rng(5)
    offsets, n = tuple(range(64)), 64
    L = random_factor(rng, (9,), offsets, n)
    g = rng.standard_normal((9, n))
    dense = [kernels.band_trace_inv(L, offsets), kernels.band_diag_inv_grad(L, offsets, g)]
    monkeypatch.setattr(dense_inverse_cpu, "N_MIN", 10**9)
    assert not _routed(L, offsets)
    recursion = [kernels.band_trace_inv(L, offsets), kernels.band_diag_inv_grad(L, offsets, g)]
    for a, b in zip(dense, recursion):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())


def test_the_rule():
    L = np.ones((1, 1, 1))
    for n, K, w, taken in [(31, 31, 30, False), (32, 32, 31, True), (32, 16, 15, False), (48, 28, 27, True),
                           (48, 27, 26, False), (256, 129, 128, True), (256, 65, 64, False), (256, 3, 255, False),
                           (4096, 4096, 4095, True), (4097, 4097, 4096, False)]:
        offs = np.array(list(range(K - 1)) + [w])
        assert (dense_inverse_cpu.addresses(np.empty((1, K, n)), offs) is not None) == taken, (n, K, w)
    assert dense_inverse_cpu.addresses(L, np.zeros(1, np.int64)) is None


@pytest.mark.slow
@settings(deadline=None, max_examples=10)
@given(n=st.integers(32, 44), drop=st.integers(0, 6), batch=st.lists(st.integers(1, 3), max_size=2),
       seed=st.integers(0, 2**32 - 1))
def test_vjps_against_finite_differences(n, drop, batch, seed):
    rng = np.random.default_rng(seed)
    offsets = tuple(o for o in range(n) if o == 0 or o > drop)  # a full band, its first diagonals dropped
    L = random_factor(rng, tuple(batch), offsets, n)
    assert _routed(L, offsets)
    for op in (ops.band_trace_inv, ops.band_diag_inv):
        check_vjp(op, [L, offsets], 0, seed=seed % 1000)
    # the KL of the full family's step, whose VJP reads the inverses its forward kept
    mu = rng.standard_normal(tuple(batch) + (n,))
    check_vjp(ops.band_normal_kl, [L, offsets, mu], 0, seed=seed % 1000)


def test_bad_input():
    rng = np.random.default_rng(2)
    offsets, n = tuple(range(40)), 40
    L = random_factor(rng, (4,), offsets, n)
    g = np.ones(4)
    for fn in (kernels.band_trace_inv, kernels.band_diag_inv,
               lambda L_, o, **kw: kernels.band_trace_inv_grad(L_, o, g, **kw)):
        bad = L.copy()
        bad[1, 0, 7] = -1.0
        with pytest.raises(ValueError, match="strictly positive"):
            fn(bad, offsets)
        bad[1, 0, 7] = np.inf
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(bad, offsets)
        # unchecked, a zero on the diagonal (a singular factor) is NaN for that factor alone
        bad[1, 0, 7] = 0.0
        out = fn(bad, offsets, check=False)
        assert np.isnan(out[1]).sum() >= out[1].size / n and np.all(np.isfinite(out[[0, 2, 3]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets,n", WIDE[::2])
def test_what_the_forward_keeps_gives_the_gradients_the_same_bits(offsets, n, dtype):
    """keep=True: the same trace and diagonal, each factor's inverse kept (L^-1, float64), and the gradients
    from it bit for bit those that invert L again, for the trace and the diagonal alike."""
    rng = np.random.default_rng(n)
    for batch in [(), (3,), (2, 3)]:
        L = random_factor(rng, batch, offsets, n, dtype)
        tr, kept = kernels.band_trace_inv(L, offsets, keep=True)
        np.testing.assert_array_equal(tr, kernels.band_trace_inv(L, offsets))
        d, kept_d = kernels.band_diag_inv(L, offsets, keep=True)
        np.testing.assert_array_equal(d, kernels.band_diag_inv(L, offsets))
        F = int(np.prod(batch))
        assert kept.shape == (F, n, n) and kept.dtype == np.float64
        np.testing.assert_array_equal(kept, kept_d)
        dense = dense_from_band(L.astype(np.float64), offsets).reshape(F, n, n)
        np.testing.assert_allclose(kept, np.linalg.inv(dense), rtol=1e-9, atol=1e-9 * np.abs(kept).max())
        g = rng.uniform(0.5, 1.5, size=batch).astype(dtype)
        gd = rng.uniform(-1.5, 1.5, size=batch + (n,)).astype(dtype)
        for held in (kept, kept_d):
            np.testing.assert_array_equal(kernels.band_trace_inv_grad(L, offsets, g, kept=held),
                                          kernels.band_trace_inv_grad(L, offsets, g))
            np.testing.assert_array_equal(kernels.band_diag_inv_grad(L, offsets, gd, kept=held),
                                          kernels.band_diag_inv_grad(L, offsets, gd))


def test_nothing_is_kept_off_the_dense_route_past_the_budget_or_for_no_factor(monkeypatch):
    rng = np.random.default_rng(3)
    chain = random_factor(rng, (4,), (0, 1), 64)
    tr, kept = kernels.band_trace_inv(chain, (0, 1), keep=True)
    assert kept is None and np.array_equal(tr, kernels.band_trace_inv(chain, (0, 1)))
    offsets, n = tuple(range(32)), 32
    L = random_factor(rng, (4,), offsets, n)
    assert kernels.band_diag_inv(L[:0], offsets, keep=True)[1] is None
    monkeypatch.setattr(trace, "KEEP_BYTES", 4 * n * n * 8 - 1)
    d, kept = kernels.band_diag_inv(L, offsets, keep=True)
    assert kept is None and np.array_equal(d, kernels.band_diag_inv(L, offsets))
    monkeypatch.setattr(trace, "KEEP_BYTES", 4 * n * n * 8)
    assert kernels.band_diag_inv(L, offsets, keep=True)[1].shape == (4, n, n)


def test_a_kept_inverse_of_the_wrong_shape_is_refused():
    rng = np.random.default_rng(4)
    offsets, n = tuple(range(32)), 32
    L = random_factor(rng, (3,), offsets, n)
    _, kept = kernels.band_trace_inv(L, offsets, keep=True)
    with pytest.raises(ValueError, match=r"kept has shape \(2, 32, 32\), expected \(3, 32, 32\)"):
        kernels.band_trace_inv_grad(L, offsets, np.ones(3), kept=kept[:2])


def test_a_singular_factor_is_kept_as_nan_and_spoils_only_its_own_gradient():
    rng = np.random.default_rng(6)
    offsets, n = tuple(range(40)), 40
    L = random_factor(rng, (4,), offsets, n)
    L[2, 0, 5] = 0.0
    tr, kept = kernels.band_trace_inv(L, offsets, check=False, keep=True)
    assert np.isnan(tr[2]) and np.all(np.isnan(kept[2])) and np.all(np.isfinite(kept[[0, 1, 3]]))
    g = np.ones(4)
    gL = kernels.band_trace_inv_grad(L, offsets, g, check=False, kept=kept)
    again = kernels.band_trace_inv_grad(L, offsets, g, check=False)
    for k, o in enumerate(offsets):  # every slot of factor 2 that exists is NaN, as without the kept inverse
        assert np.isnan(gL[2, k, o:]).all() and np.all(gL[2, k, :o] == 0)
    np.testing.assert_array_equal(gL, again)  # NaN where NaN, the other factors' bits


def test_the_tape_keeps_the_inverses_for_the_vjps(monkeypatch):
    """ops.band_trace_inv, ops.band_diag_inv and ops.band_normal_kl hand their VJPs what the forward kept
    (none of them inverts L again), with the gradients of the kernels called without it."""
    rng = np.random.default_rng(8)
    offsets, n = tuple(range(48)), 48
    L = random_factor(rng, (5,), offsets, n)
    mu = rng.standard_normal((5, n))
    seen = []
    grad = dense_inverse_cpu.sigma_grad
    monkeypatch.setattr(dense_inverse_cpu, "sigma_grad",
                        lambda L_, o, g, out, found, kept=None: seen.append(kept is not None)
                        or grad(L_, o, g, out, found, kept))
    w = rng.uniform(0.5, 1.5, 5)
    wd = rng.uniform(0.5, 1.5, (5, n))
    cases = [(lambda L_: (ops.band_trace_inv(L_, offsets) * w).sum(), kernels.band_trace_inv_grad(L, offsets, w)),
             (lambda L_: (ops.band_diag_inv(L_, offsets) * wd).sum(), kernels.band_diag_inv_grad(L, offsets, wd)),
             (lambda L_: (ops.band_normal_kl(L_, offsets, mu) * w).sum(), None)]
    for f, expected in cases:
        seen.clear()
        _, gL = value_and_grad(f)(L)
        assert seen == [True]
        if expected is not None:
            np.testing.assert_array_equal(gL, expected)
    kl_grad = kernels.band_trace_inv_grad(L, offsets, 0.5 * w)
    kl_grad[:, 0, :] += w[:, None] / L[:, 0, :]
    np.testing.assert_array_equal(gL, kl_grad)

"""The banded Cholesky kernel (gvae.kernels.band_cholesky) against NumPy's dense and SciPy's banded
factorisations in float32 and float64, ill-conditioned matrices included; its refusal, naming the
first failing row, of a matrix that is not positive definite (never NaN); its argument checks; and its
gradient (the finite-difference check is tests/test_op_gradients.py's, with every op's)."""
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st

from gvae import kernels, ops
from gvae.autodiff import value_and_grad
from tests.band_reference import band_from_dense, dense_from_band, random_factor


def spd_band(rng, batch, n, w, garbage=np.nan, dtype=np.float64):
    """A random symmetric positive definite band matrix A = M M^T of half-bandwidth w (M a random band
    factor on a random stencil with largest offset w) in full-band storage, and its dense form."""
    inner = tuple(sorted(rng.choice(np.arange(1, w), size=min(w - 1, 2), replace=False))) if w > 1 else ()
    offsets = (0,) + inner + ((w,) if w else ())
    M = dense_from_band(random_factor(rng, batch, offsets, n, garbage=0.0), offsets)
    D = M @ np.swapaxes(M, -1, -2)
    A = band_from_dense(D, tuple(range(w + 1))).astype(dtype)
    for k in range(1, w + 1):
        A[..., k, :k] = garbage  # the slots that do not exist: never read
    return A, D


def scipy_factor(A, w):
    """SciPy's cholesky_banded of each matrix in A (*batch, w + 1, n), back in gvae's band storage."""
    A = np.asarray(A, np.float64)
    n = A.shape[-1]
    out = np.zeros(A.shape)
    for idx in np.ndindex(A.shape[:-2]):
        ab = np.zeros((w + 1, n))  # SciPy's lower form: ab[k, j] = A_{j+k, j}
        for k in range(w + 1):
            ab[k, :n - k] = A[idx + (k, slice(k, None))]
        c = scipy.linalg.cholesky_banded(ab, lower=True)
        for k in range(w + 1):
            out[idx + (k, slice(k, None))] = c[k, :n - k]
    return out


@settings(deadline=None, max_examples=60)
@given(n=st.integers(1, 30), w=st.integers(0, 8), batch=st.lists(st.integers(1, 3), max_size=2),
       seed=st.integers(0, 2**32 - 1))
def test_against_scipy_and_numpy_in_float64(n, w, batch, seed):
    w = min(w, n - 1)
    A, D = spd_band(np.random.default_rng(seed), tuple(batch), n, w)
    L = kernels.band_cholesky(A, kernels.full_band(w))
    assert L.shape == A.shape and L.dtype == np.float64
    np.testing.assert_allclose(L, scipy_factor(A, w), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dense_from_band(L, range(w + 1)), np.linalg.cholesky(D), rtol=1e-11, atol=1e-12)
    for k in range(1, w + 1):
        assert np.all(L[..., k, :k] == 0)  # the slots that do not exist are zero, not the input's NaN


@pytest.mark.parametrize("n,w", [(1, 0), (9, 0), (40, 1), (36, 6), (36, 7), (12, 11)])
def test_float32_against_the_float64_reference(n, w):
    A, _ = spd_band(np.random.default_rng(n + w), (4,), n, w, dtype=np.float32)
    L = kernels.band_cholesky(A, kernels.full_band(w))
    assert L.dtype == np.float32
    np.testing.assert_allclose(L, scipy_factor(A, w), rtol=2e-6, atol=2e-6)


def _graph_laplacian(rows, cols, shift):
    """The graph Laplacian of a rows x cols lattice (row-major; singular, the constants its null space)
    plus shift I: a band of half-width cols, condition number about 8 / shift."""
    n = rows * cols
    D = shift * np.eye(n)
    for i in range(n):
        for j in ([i + 1] if (i + 1) % cols else []) + ([i + cols] if i + cols < n else []):
            D[i, j] = D[j, i] = -1.0
            D[i, i] += 1.0
            D[j, j] += 1.0
    return D


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["laplacian_1d", "laplacian_2d", "graded"])
def test_ill_conditioned_matrices(case, dtype):
    """Condition numbers 2e5 to 1e12: the factor reproduces A to its own precision (backward error
    |L L^T - A| <= c eps |L| |L|^T), and matches SciPy's float64 factor of the same (rounded) A within
    what the condition number allows."""
    rng = np.random.default_rng(7)
    if case == "laplacian_1d":  # tridiagonal 2, -1: cond ~ 4 n^2 / pi^2 = 2.6e5
        n, w = 800, 1
        D = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    elif case == "laplacian_2d":  # cond ~ 8e7 (float32: 8e5)
        rows, cols = 30, 8
        n, w = rows * cols, cols
        D = _graph_laplacian(rows, cols, 1e-7 if dtype == np.float64 else 1e-5)
    else:  # A = S C S, C a well-conditioned band, S diagonal from 1e-6 to 1: cond ~ 1e12 (float32: 1e-3, 1e6)
        n, w = 60, 4
        C = dense_from_band(random_factor(rng, (), (0, 1, 4), n, garbage=0.0), (0, 1, 4))
        S = np.diag(np.logspace(-6 if dtype == np.float64 else -3, 0, n))
        D = S @ C @ C.T @ S
    full = tuple(range(w + 1))
    A = band_from_dense(D, full).astype(dtype)
    L = kernels.band_cholesky(A, full)
    assert L.dtype == dtype and np.all(np.isfinite(L))
    Ld = dense_from_band(L, full)
    eps = np.finfo(dtype).eps
    residual = np.abs(Ld @ Ld.T - dense_from_band(A, full) - np.tril(dense_from_band(A, full), -1).T)
    assert np.all(residual <= 8 * (w + 1) * eps * (np.abs(Ld) @ np.abs(Ld).T) + 1e-300)
    reference = scipy_factor(A, w)
    cond = np.linalg.cond(np.asarray(D, np.float64))
    assert cond > 1e5
    scale = np.abs(reference).max()
    np.testing.assert_allclose(L, reference, rtol=0, atol=min(1.0, 10 * cond * eps) * scale)


def test_not_positive_definite_names_the_first_failing_row():
    A = band_from_dense(np.array([[4.0, 2, 0, 0], [2, 5, 1, 0], [0, 1, 0.2, 3], [0, 0, 3, 1]]), (0, 1))
    with pytest.raises(ValueError, match=r"^band_cholesky: A is not positive definite: the pivot of row 2 "):
        kernels.band_cholesky(A, (0, 1))
    # in a batch: the first failing matrix in C order, by its batch index, and how many fail
    rng = np.random.default_rng(3)
    B, _ = spd_band(rng, (2, 3), 10, 2)
    B[1, 0, 0, 6] = -50.0
    B[1, 2, 0, 1] = -1.0
    with pytest.raises(ValueError, match=r"at batch index \(1, 0\): the pivot of row 6 .*\(2 of 6 matrices fail\)"):
        kernels.band_cholesky(B, (0, 1, 2))
    for D, row in (([[1.0, 1.0], [1.0, 1.0]], 1), ([[-1.0]], 0), ([[0.0, 0.0], [0.0, 1.0]], 0)):
        for dtype in (np.float32, np.float64):  # a zero pivot (a singular matrix) fails too
            offsets = tuple(range(len(D)))
            with pytest.raises(ValueError, match=f"pivot of row {row} "):
                kernels.band_cholesky(band_from_dense(np.array(D, dtype), offsets), offsets)


def test_nan_or_inf_in_the_matrix_is_named_and_unused_slots_are_ignored():
    A, _ = spd_band(np.random.default_rng(4), (3,), 8, 2)  # NaN in the slots that do not exist
    assert np.all(np.isfinite(kernels.band_cholesky(A, (0, 1, 2))))
    for bad in (np.nan, np.inf):
        for k, i in ((0, 5), (2, 4)):
            B = A.copy()
            B[1, k, i] = bad
            with pytest.raises(ValueError, match="^band_cholesky: A contains NaN or inf"):
                kernels.band_cholesky(B, (0, 1, 2))


def test_float32_entries_near_the_maximum_give_the_error_without_an_overflow_warning():
    """Finite entries near float32's maximum sum to inf in the scan that looks for NaN/inf: NumPy's
    overflow warning once came before the right error (here: not positive definite) or a good factor."""
    A = np.zeros((2, 4), np.float32)
    A[0], A[1, 1:] = 3e38, 3e38  # pivot of row 1: 3e38 - (3e38)^2 / 3e38 = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="^band_cholesky: A is not positive definite: the pivot of row 1 "):
            kernels.band_cholesky(A, (0, 1))
        A[1, 2] = np.inf
        with pytest.raises(ValueError, match="^band_cholesky: A contains NaN or inf"):
            kernels.band_cholesky(A, (0, 1))
        A[1, 1:] = 1e38
        L = kernels.band_cholesky(A, (0, 1))
    assert L.dtype == np.float32 and np.all(np.isfinite(L[..., 1:]))


def test_unchecked_failure_marks_the_failing_rows_and_leaves_the_others():
    A, _ = spd_band(np.random.default_rng(5), (3,), 9, 1)
    good = kernels.band_cholesky(A, (0, 1))
    A[1, 0, 4] = -3.0
    L = kernels.band_cholesky(A, (0, 1), check=False)
    np.testing.assert_array_equal(L[[0, 2]], good[[0, 2]])
    assert np.all(np.isnan(L[1, :, 4:])) and np.all(np.isfinite(L[1, :, 1:4])) and np.isfinite(L[1, 0, 0])


@pytest.mark.parametrize("call,error,match", [
    (lambda: kernels.band_cholesky(np.ones((3, 5)), (0, 1, 3)), ValueError, r"offsets must be the full band \(0, 1, \.\.\., w\)"),
    # the messages name the argument A (they once named L, the result)
    (lambda: kernels.band_cholesky(np.ones((2, 5)), (0, 1, 2)), ValueError, "^band_cholesky: A holds K=2 diagonals"),
    (lambda: kernels.band_cholesky(np.ones((2, 5), int), (0, 1)), TypeError, "^band_cholesky A: .*float32 or float64"),
    (lambda: kernels.band_cholesky(np.ones(5), (0,)), ValueError, "^band_cholesky A: .*at least 2 dimension"),
    (lambda: ops.band_cholesky(np.ones((2, 0)), (0, 1)), ValueError,
     r"^band_cholesky: A must have shape \(\*batch, K, n\)"),
    (lambda: kernels.band_cholesky_grad(np.ones((2, 5)), (0, 1), np.ones(5)), ValueError, "^band_cholesky_grad g: "),
    (lambda: kernels.band_cholesky_grad(np.ones((3, 5)), (0, 1), np.ones((3, 5))), ValueError,
     "^band_cholesky_grad: L holds K=3"),
    (lambda: kernels.band_cholesky(np.ones((3, 2)), (0, 1, 2)), ValueError, "offsets must be < n=2"),
    (lambda: kernels.band_cholesky_grad(np.ones((2, 5)), (0, 1), np.ones((3, 2, 5))), ValueError, "g must have L's shape"),
    (lambda: kernels.band_cholesky_grad(np.ones((2, 5)), (0, 1), np.ones((2, 5), np.float32)), TypeError, "one dtype"),
    (lambda: kernels.band_cholesky_grad(-np.ones((2, 5)), (0, 1), np.ones((2, 5))), ValueError, "strictly positive"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_empty_batch_and_zero_gradient_outside_the_band():
    assert kernels.band_cholesky(np.ones((0, 2, 4)), (0, 1)).shape == (0, 2, 4)
    A, _ = spd_band(np.random.default_rng(6), (2,), 7, 3)
    _, gA = value_and_grad(lambda a: ops.sum(ops.band_cholesky(a, (0, 1, 2, 3)) ** 2))(A)
    for k in range(1, 4):
        assert np.all(gA[..., k, :k] == 0)
    assert np.all(np.isfinite(gA))


def test_float32_gradient_against_float64():
    A, _ = spd_band(np.random.default_rng(8), (3,), 20, 4)
    u = np.random.default_rng(9).standard_normal(A.shape)
    full = (0, 1, 2, 3, 4)
    _, g64 = value_and_grad(lambda a: ops.sum(ops.band_cholesky(a, full) * u))(A)
    _, g32 = value_and_grad(lambda a: ops.sum(ops.band_cholesky(a, full) * u.astype(np.float32)))(A.astype(np.float32))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4 * np.abs(g64[..., 0, :]).max())


def test_gradient_against_the_dense_rule():
    """The band-restricted reverse mode equals the dense rule of Murray (2016) on the stored lower band:
    with Phi taking the lower triangle with a halved diagonal, S = L^-T Phi(L^T Lbar) L^-1 and dA = S + S^T
    below the diagonal, S_ii on it (each off-diagonal band entry stands for both halves)."""
    rng = np.random.default_rng(10)
    n, w = 15, 3
    full = tuple(range(w + 1))
    A, _ = spd_band(rng, (), n, w, garbage=0.0)
    L = kernels.band_cholesky(A, full)
    g = rng.standard_normal(L.shape)
    for k in range(1, w + 1):
        g[k, :k] = 0.0
    Ld, Gd = dense_from_band(L, full), dense_from_band(g, full)
    P = np.tril(Ld.T @ Gd)
    P[np.diag_indices(n)] *= 0.5
    Linv = np.linalg.inv(Ld)
    S = Linv.T @ P @ Linv
    dense = np.tril(S + S.T, -1) + np.diag(np.diag(S))
    np.testing.assert_allclose(kernels.band_cholesky_grad(L, full, g), band_from_dense(dense, full), rtol=1e-10, atol=1e-12)

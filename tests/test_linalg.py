"""gvae.linalg against scipy.linalg (values, batches, SciPy's edge cases, pivoting), the dense NumPy algebra,
and its refusals; the derivative rules of gvae.rules.banded against central differences in float64."""
import numpy as np
import pytest
import scipy.linalg as sl
from hypothesis import given, settings
from hypothesis import strategies as st

from gvae import linalg
from gvae.rules import banded as rules


def band_index(n, lower, upper):
    """(rows, cols, inside) (n, n): the dense matrix of SciPy's band storage of (l, u) is
    ``where(inside, ab[..., rows, cols], 0)``, in NumPy, PyTorch or jax.numpy (differentiable there)."""
    i, j = np.indices((n, n))
    inside = (j - i <= upper) & (i - j <= lower)
    return np.where(inside, upper + i - j, 0), j, inside


# Batch shapes of ab and b that broadcast, with as many axes each (b may then hold vectors), and b's alone.
BATCHES = [((), ()), ((2,), (2,)), ((2, 1), (1, 3)), ((), (2,))]
FUNCTIONS = ["solve_banded", "matmul_banded", "solveh_banded", "cholesky_banded", "cho_solve_banded",
             "logdeth_banded", "eigvals_banded"]
# Hypothesis's cases of the fronts' tests (random_case's arguments)
CASE = dict(n=st.integers(1, 7), lower=st.integers(0, 2), upper=st.integers(0, 2), batches=st.sampled_from(BATCHES),
            k=st.sampled_from([None, 2]), seed=st.integers(0, 2 ** 16))


def call_banded(module, name, params, *args, **kwargs):
    """``name`` of ``module`` (gvae.linalg, gvae.torch.linalg, gvae.jax.linalg) in SciPy's signature, with
    :func:`random_case`'s params and arrays."""
    f = getattr(module, name)
    if name in ("solve_banded", "matmul_banded"):
        return f(params, *args, **kwargs)
    if name == "cho_solve_banded":
        return f((args[0], params[0]), *args[1:], **kwargs)
    return f(*args, lower=params[0], **kwargs)


def random_case(rng, name, n, lower, upper, batches, k):
    """(params, arrays) of a call of ``name``: (l, u) = (lower, upper) for the general functions; the
    symmetric ones take u off-diagonals, in lower form where l > u, and cho_solve_banded the factor. b
    (*b_batch, n) for k None (as many axes as ab's batch, or 1-D), else (*b_batch, n, k)."""
    ab_batch, b_batch = batches
    if k is None and len(b_batch) != len(ab_batch):
        b_batch = ()  # (a vector b has ab's number of batch axes, or none)
    b = rng.standard_normal(b_batch + ((n,) if k is None else (n, k)))
    if name in ("solve_banded", "matmul_banded"):
        ab = _general(rng, ab_batch, n, lower, upper, "random")
        ab[..., upper, :] += lower + upper + 1  # well conditioned
        return (lower, upper), [ab, b]
    form = lower > upper
    ab = _spd(rng, ab_batch, n, upper, form)
    if name == "cho_solve_banded":
        ab = linalg.cholesky_banded(ab, lower=form)
    return (form,), [ab] + ([b] if name in ("solveh_banded", "cho_solve_banded") else [])


def dense_reference(xp, name, params, ab, b=None):
    """gvae.linalg's function ``name`` (``params``: (l, u) or (lower,)) through the dense matrix of its band,
    in ``xp``: NumPy, torch or jax.numpy (differentiable with the latter two)."""
    n = ab.shape[-1]

    def dense(lower, upper):
        rows, cols, inside = (xp.asarray(a) for a in band_index(n, lower, upper))
        return xp.where(inside, ab[..., rows, cols], 0.0)

    if name in ("solve_banded", "matmul_banded"):
        A = dense(*params)
    else:
        w, lower = ab.shape[-2] - 1, params[0]
        T = dense(w, 0) if lower else dense(0, w)  # the stored triangle, or the factor L (U = L^T)
        if name == "cho_solve_banded":
            L = T if lower else T.mT
            A = L @ L.mT
        else:
            A = xp.where(xp.asarray(np.tri(n, dtype=bool) if lower else np.tri(n, dtype=bool).T), T, T.mT)
    if name == "logdeth_banded":
        return xp.linalg.slogdet(A)[1]
    if name == "eigvals_banded":
        return xp.linalg.eigvalsh(A)
    if name == "cholesky_banded":
        L = xp.linalg.cholesky(A)
        r, j = np.indices(ab.shape[-2:])
        i = r + j if lower else r - w + j  # c[r, j] = L[j + r, j], or U[r - w + j, j] = L[j, r - w + j]
        inside = xp.asarray((i >= 0) & (i < n))
        i, j = xp.asarray(np.clip(i, 0, n - 1)), xp.asarray(j)
        return xp.where(inside, L[..., i, j] if lower else L[..., j, i], 0.0)
    vector = b.ndim == 1 or b.ndim == ab.ndim - 1
    B = b[..., None] if vector else b
    X = A @ B if name == "matmul_banded" else xp.linalg.solve(A, B)
    return X[..., 0] if vector else X


def _dense(ab, lower, upper):
    """The dense matrix of SciPy's band storage (the last two axes)."""
    rows, cols, inside = band_index(ab.shape[-1], lower, upper)
    return np.where(inside, ab[..., rows, cols], 0.0)


def _general(rng, batch, n, lower, upper, kind):
    """A band (*batch, l + u + 1, n): ``random`` entries (pivoting needed: not diagonally dominant), or
    ``zero-lead`` with the main diagonal zero (every first pivot must come from below)."""
    ab = rng.standard_normal(batch + (lower + upper + 1, n))
    if kind == "zero-lead" and lower:
        ab[..., upper, :] = 0.0
    return ab


def _spd(rng, batch, n, w, lower):
    """A symmetric positive definite band of w off-diagonals in upper or lower form (diagonally dominant
    plus a random positive part)."""
    ab = rng.standard_normal(batch + (w + 1, n)) * 0.5
    diagonal = 0 if lower else w
    ab[..., diagonal, :] = 2 * w + 1 + rng.random(batch + (n,))
    return ab


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), lower=st.integers(0, 4), upper=st.integers(0, 4), k=st.sampled_from([None, 1, 3]),
       batch=st.sampled_from([(), (3,), (2, 2)]), kind=st.sampled_from(["random", "zero-lead"]),
       seed=st.integers(0, 2 ** 16))
def test_solve_banded_is_scipys_and_the_dense_solve(n, lower, upper, k, batch, kind, seed):
    """Batched, each system as SciPy's LAPACK gbsv and as numpy.linalg.solve on the dense matrix, systems that
    need pivoting included; b a vector or a matrix as SciPy takes it."""
    rng = np.random.default_rng(seed)
    ab = _general(rng, batch, n, lower, upper, kind)
    b = rng.standard_normal(batch + ((n,) if k is None else (n, k)))
    dense = _dense(ab, lower, upper)
    if np.any(np.abs(np.linalg.det(dense)) < 1e-8):
        return  # (singular or nearly: the refusal is tested below)
    x = linalg.solve_banded((lower, upper), ab, b)
    assert x.shape == b.shape and x.dtype == np.float64
    want = np.linalg.solve(dense, b[..., None] if k is None else b)
    want = want[..., 0] if k is None else want
    np.testing.assert_allclose(x, want, rtol=1e-8, atol=1e-8 * np.abs(want).max())
    for index in np.ndindex(*batch):
        np.testing.assert_allclose(x[index], sl.solve_banded((lower, upper), ab[index], b[index]), rtol=1e-9,
                                   atol=1e-9 * np.abs(want).max())


def test_solve_banded_broadcasts_its_batches_and_keeps_float32():
    rng = np.random.default_rng(0)
    ab = _general(rng, (4, 1), 12, 2, 1, "random")
    ab[..., 1, :] += 6.0
    b = rng.standard_normal((3, 12, 2))
    x = linalg.solve_banded((2, 1), ab, b[None])  # (as many axes as ab: matrices; one fewer would be vectors)
    assert x.shape == (4, 3, 12, 2)
    for i in range(4):
        for j in range(3):
            np.testing.assert_allclose(x[i, j], sl.solve_banded((2, 1), ab[i, 0], b[j]), rtol=1e-12)
    x32 = linalg.solve_banded((2, 1), ab.astype(np.float32), b[None].astype(np.float32))
    assert x32.dtype == np.float32
    np.testing.assert_allclose(x32, x, rtol=1e-4, atol=1e-5)
    vectors = linalg.solve_banded((2, 1), ab[:, 0], np.broadcast_to(b[0, :, 0], (4, 12)))
    np.testing.assert_allclose(vectors, x[:, 0, :, 0], rtol=1e-12)
    assert linalg.solve_banded((2, 1), ab[0, 0], np.arange(12)).dtype == np.float64  # integers as float64
    b_before = b.copy()
    linalg.solve_banded((2, 1), ab, b[None], overwrite_b=True, overwrite_ab=True)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("w, n, k", [(0, 1, None), (0, 5, 2), (1, 1, None), (2, 9, None), (3, 20, 4), (5, 6, 1)])
def test_the_symmetric_functions_are_scipys(lower, w, n, k):
    """solveh_banded, cholesky_banded, cho_solve_banded in both forms, and the log-determinant against the
    dense slogdet, batched; n = 1, no off-diagonal, more off-diagonals than rows."""
    rng = np.random.default_rng(w * 100 + n)
    batch = (3,)
    ab = _spd(rng, batch, n, w, lower)
    b = rng.standard_normal(batch + ((n,) if k is None else (n, k)))
    x = linalg.solveh_banded(ab, b, lower=lower)
    c = linalg.cholesky_banded(ab, lower=lower)
    dense = _dense(ab, 0, w) if not lower else _dense(ab, w, 0)
    dense = dense + np.swapaxes(dense, -1, -2) - np.eye(n) * np.diagonal(dense, axis1=-2, axis2=-1)[..., None, :]
    want = np.linalg.solve(dense, b[..., None] if k is None else b)
    np.testing.assert_allclose(x, want[..., 0] if k is None else want, rtol=1e-12, atol=1e-14)
    factor = np.linalg.cholesky(dense)  # L, with U = L^T
    np.testing.assert_allclose(c, _band_of(factor, w, lower), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(linalg.logdeth_banded(ab, lower=lower), np.linalg.slogdet(dense)[1], rtol=1e-12)
    np.testing.assert_allclose(linalg.cho_solve_banded((c, lower), b), x, rtol=1e-12, atol=1e-14)
    if n <= w:
        return  # (SciPy's own functions fail on more off-diagonals than rows: their LAPACK wants n > w)
    for i in range(3):
        np.testing.assert_allclose(x[i], sl.solveh_banded(ab[i], b[i], lower=lower), rtol=1e-12, atol=1e-14)
        scipy_factor = sl.cholesky_banded(ab[i], lower=lower)
        used = _band_of(np.ones((n, n)), w, lower) > 0  # the slots inside the matrix
        np.testing.assert_allclose(c[i][used], scipy_factor[used], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(linalg.cho_solve_banded((c[i], lower), b[i]),
                                   sl.cho_solve_banded((scipy_factor, lower), b[i]), rtol=1e-12, atol=1e-14)


def _band_of(L, w, lower):
    """The band storage, SciPy's lower form of L (w sub-diagonals) or upper form of U = L^T, of a dense
    lower-triangular L (*batch, n, n); zeros outside the matrix."""
    n = L.shape[-1]
    out = np.zeros(L.shape[:-2] + (w + 1, n))
    for i in range(n):
        for j in range(max(0, i - w), i + 1):
            if lower:
                out[..., i - j, j] = L[..., i, j]
            else:  # U[j, i] = L[i, j] at ab[w + j - i, i]
                out[..., w + j - i, i] = L[..., i, j]
    return out


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), lower=st.integers(0, 3), upper=st.integers(0, 3), k=st.sampled_from([None, 2]),
       seed=st.integers(0, 2 ** 16))
def test_matmul_banded_is_the_dense_product(n, lower, upper, k, seed):
    rng = np.random.default_rng(seed)
    ab = rng.standard_normal((2, lower + upper + 1, n))
    x = rng.standard_normal((2, n) if k is None else (2, n, k))
    want = _dense(ab, lower, upper) @ (x[..., None] if k is None else x)
    np.testing.assert_allclose(linalg.matmul_banded((lower, upper), ab, x), want[..., 0] if k is None else want,
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), w=st.integers(0, 4), lower=st.booleans(), batch=st.sampled_from([(), (3,), (2, 2)]),
       float32=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_eigvals_banded_is_scipys_and_the_dense_eigvalsh(n, w, lower, batch, float32, seed):
    """Symmetric bands (not definite), more off-diagonals than rows included: each matrix's eigenvalues as
    numpy.linalg.eigvalsh of the dense matrix and (n > w) as SciPy's; eig_banded's vectors orthonormal with A V = V
    diag(lam); an index range."""
    rng = np.random.default_rng(seed)
    ab = rng.standard_normal(batch + (w + 1, n))
    dense = _dense(ab, w, 0) if lower else _dense(ab, 0, w)
    dense = dense + np.swapaxes(dense, -1, -2) - np.eye(n) * np.diagonal(dense, axis1=-2, axis2=-1)[..., None, :]
    a = ab.astype(np.float32) if float32 else ab
    lam = linalg.eigvals_banded(a, lower=lower)
    tol = 1e-4 if float32 else 1e-11
    assert lam.shape == batch + (n,) and lam.dtype == a.dtype
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(dense), rtol=tol, atol=tol)
    for index in np.ndindex(*batch):
        if n > w:  # (SciPy misreads more off-diagonals than rows)
            np.testing.assert_allclose(lam[index], sl.eigvals_banded(a[index], lower=lower), rtol=tol, atol=tol)
    values, V = linalg.eig_banded(ab, lower=lower)
    np.testing.assert_allclose(dense @ V, V * values[..., None, :], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.swapaxes(V, -1, -2) @ V, np.broadcast_to(np.eye(n), V.shape), atol=1e-12)
    lo, hi = n // 3, n - 1
    np.testing.assert_allclose(linalg.eigvals_banded(ab, lower=lower, select="i", select_range=(lo, hi)),
                               values[..., lo:hi + 1], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("call, error, phrase", [
    (lambda: linalg.solve_banded((1, 1), np.ones((2, 5)), np.ones(5)), ValueError, "ab has 2 rows, but l = 1 and u = 1 need 3"),
    (lambda: linalg.solve_banded((1, -1), np.ones((1, 5)), np.ones(5)), ValueError, "l and u must be ints >= 0"),
    (lambda: linalg.solve_banded((1, 1), np.ones((3, 5)), np.ones(4)), ValueError, "does not match ab's n = 5"),
    (lambda: linalg.solve_banded((0, 0), np.array([[1.0, np.nan]]), np.ones(2)), ValueError, "ab must not contain infs or NaNs"),
    (lambda: linalg.solve_banded((0, 0), np.ones((1, 2)), np.array([1.0, np.inf])), ValueError, "b must not contain infs"),
    (lambda: linalg.solve_banded((0, 0), np.ones((1, 2), complex), np.ones(2)), TypeError, "is complex"),
    (lambda: linalg.solve_banded((0, 0), np.ones((2, 1, 2)), np.ones((3, 2))), ValueError, "do not broadcast"),
    (lambda: linalg.solveh_banded(np.array([[0.5, 0.5], [1.0, -4.0]]), np.ones(2)), linalg.LinAlgError, "not positive definite"),
    (lambda: linalg.cholesky_banded(np.array([[1.0, np.inf]])), ValueError, "ab must not contain infs or NaNs"),
    (lambda: linalg.cho_solve_banded(np.ones((1, 3)), np.ones(3)), ValueError, "(cb, lower)"),
    (lambda: linalg.cho_solve_banded((np.array([[1.0, 0.0]]), False), np.ones(2)), linalg.LinAlgError, "diagonal must be > 0"),
    (lambda: linalg.eigvals_banded(np.ones((2, 2, 3)), select="v", select_range=(0, 1)), ValueError, "a batch (2,) takes"),
    (lambda: linalg.eigvals_banded(np.ones((2, 3)), select="i", select_range=(2, 3)), ValueError, "0 <= lo <= hi < n = 3"),
    (lambda: linalg.eig_banded(np.ones((2, 3)), select="x"), ValueError, "select must be 'a', 'i' or 'v'"),
    (lambda: linalg.eigvals_banded(np.array([[1.0, np.nan]])), ValueError, "a_band must not contain infs or NaNs"),
])
def test_refusals_in_one_line(call, error, phrase):
    with pytest.raises(error) as info:
        call()
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_a_singular_matrix_names_its_batch_index_and_pivot():
    ab = np.ones((3, 2, 3, 4))  # l = u = 1
    ab[1, 0, 1, 2:] = 0.0  # A[2, 2] = A[3, 3] = 0 ...
    ab[1, 0, 0, :] = 0.0   # ... and no entry above or below to pivot: columns 2 and 3 have zero pivots
    ab[1, 0, 2, :] = 0.0
    with pytest.raises(linalg.LinAlgError, match=r"singular matrix at batch index \(1, 0\): the pivot of column 2 "
                                                 r"is exactly zero \(1 of 6 matrices singular\)"):
        linalg.solve_banded((1, 1), ab, np.ones(4))
    with pytest.raises(np.linalg.LinAlgError):  # SciPy agrees
        sl.solve_banded((1, 1), ab[1, 0], np.ones(4))



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower, upper", [(0, 0), (1, 0), (0, 2), (3, 3), (4, 1)])
def test_the_lockstep_kernel_is_the_scalar_one(dtype, lower, upper):
    """Groups of S systems side by side (gvae.kernels.banded_lu_cpu) against the scalar kernel on each:
    batches about S, n from 1 to 40 (below l + u too), a singular system, a NaN in ab and an inf in b
    within a group: the same values (to rounding) and info codes."""
    from gvae.kernels import banded_lu_cpu as lu
    S = lu._BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(lower * 10 + upper)
    rows = 2 * lower + upper + 1
    for count in (1, S - 1, S, S + 1, 3 * S + 5):
        for n, k in ((1, 1), (2, 2), (lower + upper, 1), (S + 3, 1), (40, 3)):
            if n < 1:
                continue
            ab = _general(rng, (count,), n, lower, upper, "random").astype(dtype)
            b = rng.standard_normal((count, n, k)).astype(dtype)
            if count > 3:
                ab[1, :, n // 2] = 0.0  # a zero column: the pivot of column n // 2 is exactly zero
                ab[2, 0, n - 1] = np.nan
                b[3, 0, k - 1] = np.inf
            want, info = b.copy(), np.empty(count, np.int64)
            lu._gbsv(ab, want, np.empty((rows, n), dtype), np.empty(n, np.int64), info, lower, upper, True, 0, count)
            got = b.copy()
            np.testing.assert_array_equal(lu.banded_lu_solve(ab, got, lower, upper, True), info)
            if count > 3:
                assert info[1] == n // 2 + 1 and info[2] == lu.NOT_FINITE_AB and info[3] == lu.NOT_FINITE_B
            np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-5, atol=0)

def _check_rule(f, vjp, jvp, args, rng, rtol=1e-6):
    """<g, f'(args) d> three ways: by the VJP's gradients, by the JVP and by a central difference."""
    out = f(*args)
    g = rng.standard_normal(out.shape)
    tangents = [rng.standard_normal(a.shape) for a in args]
    h = 1e-6
    plus, minus = f(*[a + h * d for a, d in zip(args, tangents)]), f(*[a - h * d for a, d in zip(args, tangents)])
    directional = (plus - minus) / (2 * h)
    want = np.sum(g * directional)
    got = sum(np.sum(gr * d) for gr, d in zip(vjp(out, g), tangents))
    assert got == pytest.approx(want, rel=rtol, abs=rtol)
    if jvp is not None:
        np.testing.assert_allclose(jvp(out, tangents), directional, rtol=rtol, atol=rtol * np.abs(directional).max())


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), lower=st.integers(0, 3), upper=st.integers(0, 3), k=st.integers(1, 3),
       seed=st.integers(0, 2 ** 16))
def test_the_general_rules_against_central_differences(n, lower, upper, k, seed):
    rng = np.random.default_rng(seed)
    ab = rng.standard_normal((2, lower + upper + 1, n))
    ab[:, upper] += 3.0 * (lower + upper + 1)  # well conditioned: the differences' error stays small
    b = rng.standard_normal((2, n, k))
    _check_rule(lambda A, B: linalg.solve_banded((lower, upper), A, B),
                lambda x, g: rules.solve_banded_vjp(lower, upper, ab, x, g),
                lambda x, d: rules.solve_banded_jvp(lower, upper, ab, x, *d), (ab, b), rng)
    _check_rule(lambda A, B: linalg.matmul_banded((lower, upper), A, B),
                lambda y, g: rules.matmul_banded_vjp(lower, upper, ab, b, g),
                lambda y, d: rules.matmul_banded_jvp(lower, upper, ab, b, *d), (ab, b), rng)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), w=st.integers(0, 3), k=st.integers(1, 3), lower=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_the_symmetric_rules_against_central_differences(n, w, k, lower, seed):
    rng = np.random.default_rng(seed)
    ab = _spd(rng, (2,), n, w, lower)
    b = rng.standard_normal((2, n, k))
    c = linalg.cholesky_banded(ab, lower=lower)
    _check_rule(lambda A, B: linalg.solveh_banded(A, B, lower=lower),
                lambda x, g: rules.solveh_banded_vjp(ab, lower, x, g),
                lambda x, d: rules.solveh_banded_jvp(ab, lower, x, *d), (ab, b), rng)
    _check_rule(lambda A: linalg.cholesky_banded(A, lower=lower),
                lambda out, g: (rules.cholesky_banded_vjp(ab, lower, out, g),),
                lambda out, d: rules.cholesky_banded_jvp(ab, lower, out, *d), (ab,), rng)
    _check_rule(lambda C, B: linalg.cho_solve_banded((C, lower), B),
                lambda x, g: rules.cho_solve_banded_vjp(c, lower, x, g),
                lambda x, d: rules.cho_solve_banded_jvp(c, lower, x, *d), (c, b), rng)
    _check_rule(lambda A: linalg.logdeth_banded(A, lower=lower),
                lambda out, g: (rules.logdeth_banded_vjp(ab, lower, g),),
                lambda out, d: rules.logdeth_banded_jvp(ab, lower, *d), (ab,), rng)
    # Central differences of an eigenvalue hold to rtol only away from the others (the error grows as
    # (h / gap)^2: an example with two eigenvalues 6.5e-4 apart missed by 1.7e-6), so the eigenvalues'
    # rule is checked where every gap is at least 1e-2 (most examples: the spectra lie in about [2, 5]).
    gaps = np.diff(np.sort(linalg.eigvals_banded(ab, lower=lower), axis=-1), axis=-1)
    if gaps.size == 0 or gaps.min() >= 1e-2:
        _check_rule(lambda A: linalg.eigvals_banded(A, lower=lower),
                    lambda out, g: (rules.eigvals_banded_vjp(ab, lower, g),),
                    lambda out, d: rules.eigvals_banded_jvp(ab, lower, *d), (ab,), rng)

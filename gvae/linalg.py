"""Banded linear algebra with SciPy's names, signatures and banded storage, batched, on NumPy arrays (Numba
kernels) and, where noted, CuPy arrays (CUDA kernels).

Storage (``scipy.linalg.solve_banded``'s): a general band matrix A (n x n) of ``l`` sub- and ``u``
super-diagonals is ``ab`` (l + u + 1, n) with ``ab[u + i - j, j] = A[i, j]``; a symmetric positive definite
one of ``u`` off-diagonals is its upper triangle, ``ab[u + i - j, j] = A[i, j]`` (i <= j), or with
``lower=True`` its lower one, ``ab[i - j, j] = A[i, j]`` (i >= j). Slots outside the matrix are ignored.

Batches: ``ab`` may have leading axes (*batch, rows, n); the right-hand sides ``b`` are (*batch, n) vectors
when ``b.ndim == ab.ndim - 1`` or b is 1-D, and (*batch, n, k) matrices otherwise (as
``torch.linalg.solve`` tells them apart); the batch axes broadcast by NumPy's rules. Integer inputs are
computed in float64, float32 stays float32; complex arrays are refused. ``overwrite_*`` are accepted for
SciPy's signatures (gvae never writes into its arguments); ``check_finite`` refuses NaN and inf as SciPy
does.

The eigenvalue functions, :func:`eig_banded` and :func:`eigvals_banded`, are SciPy's (LAPACK) on each matrix
of a batch, on NumPy arrays only.

The derivatives of every function (both ``ab`` and ``b``) are in :mod:`gvae.rules.banded`, which
:mod:`gvae.torch.linalg` and :mod:`gvae.jax.linalg` use."""
import math
from typing import NamedTuple

import numpy as np
import scipy.linalg

from .kernels import array_module
from .kernels.band import band_cholesky, band_logdet, band_solve, band_solve_t, full_band
from .kernels.banded_lu import NOT_FINITE_AB, NOT_FINITE_B, banded_lu_solve

__all__ = ["solve_banded", "solveh_banded", "cholesky_banded", "cho_solve_banded", "matmul_banded",
           "logdeth_banded", "eig_banded", "eigvals_banded", "LinAlgError"]

LinAlgError = np.linalg.LinAlgError


def _float(name, argname, a):
    """``a`` as an array of float32 or float64 (integers and bools as float64), on its own device."""
    xp = np if isinstance(a, (np.ndarray, np.generic, list, tuple, int, float)) else array_module(a)
    a = xp.asarray(a)
    if a.dtype.kind == "c":
        raise TypeError(f"{name}: {argname} is complex ({a.dtype}); gvae's banded functions take real arrays")
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name}: {argname} has dtype {a.dtype}; expected a real floating-point array")
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        a = a.astype(np.float64)
    return a


def _common(name, a, b):
    """``a`` and ``b`` in their common dtype (float32 with float32, float64 otherwise)."""
    if a.dtype != b.dtype:
        dtype = np.promote_types(a.dtype, b.dtype)
        a, b = a.astype(dtype), b.astype(dtype)
    return a, b


def _finite(name, argname, a, check):
    if check and not bool(array_module(a).isfinite(a).all()):
        raise ValueError(f"{name}: {argname} must not contain infs or NaNs (check_finite=True)")


def check_bands(name, ab, l_and_u=None):
    """Check that ``ab`` (anything with NumPy's ``ndim`` and ``shape``: an array, a tensor, a tracer) is
    (*batch, rows, n), with rows = l + u + 1 for ``l_and_u`` = (l, u) when given."""
    if ab.ndim < 2:
        raise ValueError(f"{name}: ab must have shape (*batch, rows, n), got {tuple(ab.shape)}")
    if l_and_u is not None and ab.shape[-2] != sum(l_and_u) + 1:
        lower, upper = l_and_u
        raise ValueError(f"{name}: ab has {ab.shape[-2]} rows, but l = {lower} and u = {upper} need "
                         f"{lower + upper + 1} (ab.shape {tuple(ab.shape)})")


def band_counts(name, l_and_u):
    """SciPy's ``(l, u)`` checked: two ints >= 0."""
    try:
        lower, upper = (int(v) for v in l_and_u)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: (l, u) must be two ints, the numbers of sub- and super-diagonals; got "
                         f"{l_and_u!r}") from None
    if lower < 0 or upper < 0 or (lower, upper) != tuple(l_and_u):
        raise ValueError(f"{name}: l and u must be ints >= 0, got {tuple(l_and_u)!r}")
    return lower, upper


class Layout(NamedTuple):
    """How the right-hand sides of a call line up with its bands: ``batch`` the broadcast batch shape,
    ``vector`` whether b holds vectors (*batch, n) rather than matrices (*batch, n, k), ``out`` x's shape."""
    batch: tuple
    vector: bool
    out: tuple


def layout(name, ab_shape, b_shape, broadcast=np.broadcast_shapes):
    """The :class:`Layout` of bands of shape ``ab_shape`` (*batch, rows, n) and right-hand sides of shape
    ``b_shape``, from the shapes alone; ``broadcast`` the array library's ``broadcast_shapes``."""
    n = ab_shape[-1]
    vector = len(b_shape) == 1 or len(b_shape) == len(ab_shape) - 1
    if len(b_shape) < 1 or (b_shape[-1] if vector else b_shape[-2]) != n:
        raise ValueError(f"{name}: b of shape {tuple(b_shape)} does not match ab's n = {n}: expected "
                         f"(*batch, {n}) or (*batch, {n}, k)")
    b_batch = tuple(b_shape[:-1] if vector else b_shape[:-2])
    try:
        batch = tuple(broadcast(tuple(ab_shape[:-2]), b_batch))
    except (ValueError, RuntimeError):
        raise ValueError(f"{name}: the batch shapes of ab {tuple(ab_shape[:-2])} and b {b_batch} do not "
                         "broadcast") from None
    return Layout(batch, vector, batch + ((n,) if vector else (n, b_shape[-1])))


def flat(a, batch, broadcast_to):
    """``a`` (*, p, q) broadcast to ``batch`` + (p, q) and flattened to (F, p, q), in the array library of
    ``broadcast_to`` (NumPy's, CuPy's, ``torch.broadcast_to``, ``jax.numpy.broadcast_to``)."""
    core = tuple(a.shape[-2:])
    return broadcast_to(a, tuple(batch) + core).reshape((math.prod(batch),) + core)


def batched_call(name, core, ab, b=None, *, broadcast_to, broadcast=np.broadcast_shapes):
    """``core(ab, b)`` on the batch flattened, ab (F, rows, n) and b (F, n, k) (or ``core(ab)`` without b),
    its output (F, ...) back in the callers' shape: x as :func:`layout` says, or ab's batch + the rest.
    The shape logic of gvae.torch.linalg and gvae.jax.linalg, whose array libraries' broadcasts and
    reshapes carry the gradients back to the inputs' shapes."""
    if b is None:
        batch = tuple(ab.shape[:-2])
        out = core(flat(ab, batch, broadcast_to))
        return out.reshape(batch + tuple(out.shape[1:]))
    lay = layout(name, ab.shape, b.shape, broadcast)
    out = core(flat(ab, lay.batch, broadcast_to), flat(b[..., None] if lay.vector else b, lay.batch, broadcast_to))
    return out.reshape(lay.out)


def _rhs(name, ab, b):
    """(a new C-contiguous (F, n, k) copy of b broadcast to the batch, the batch shape, the result's shape)."""
    lay = layout(name, ab.shape, b.shape)
    xp = array_module(b)
    full = flat(b[..., None] if lay.vector else b, lay.batch, xp.broadcast_to)
    return xp.array(full, order="C", copy=True), lay.batch, lay.out


def _batched(ab, batch):
    """``ab`` broadcast to ``batch`` and flattened to (F, rows, n), C-contiguous."""
    return array_module(ab).ascontiguousarray(flat(ab, batch, array_module(ab).broadcast_to))


def _index(batch, f):
    return f" at batch index {tuple(int(i) for i in np.unravel_index(f, batch))}" if batch else ""


def solve_banded(l_and_u, ab, b, overwrite_ab=False, overwrite_b=False, check_finite=True):
    """x with A x = b for the general band matrix A of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n),
    by LU factorisation with partial pivoting (LAPACK's gbsv: the interchanges widen U's band to l + u).
    O(n l (l + u + k)) per system. Returns x of b's broadcast shape. A matrix with a zero pivot raises
    :class:`LinAlgError` naming its batch index and the pivot's column. NumPy and CuPy arrays."""
    name = "solve_banded"
    lower, upper = band_counts(name, l_and_u)
    ab, b = _common(name, _float(name, "ab", ab), _float(name, "b", b))
    check_bands(name, ab, (lower, upper))
    rhs, batch, out_shape = _rhs(name, ab, b)
    # (the kernel checks for NaN and inf as it copies: no pass of its own over the arrays)
    info = banded_lu_solve(_batched(ab, batch), rhs, lower, upper, check_finite)
    for code, argname in ((NOT_FINITE_AB, "ab"), (NOT_FINITE_B, "b")):
        if (info == code).any():
            raise ValueError(f"{name}: {argname} must not contain infs or NaNs (check_finite=True)")
    failed = np.flatnonzero(info)
    if failed.size:
        f = int(failed[0])
        raise LinAlgError(f"{name}: singular matrix{_index(batch, f)}: the pivot of column {int(info[f]) - 1} "
                          f"is exactly zero ({failed.size} of {info.size} matrices singular)")
    return rhs.reshape(out_shape)


def gvae_band(ab, lower):
    """The symmetric band in gvae's lower storage (*batch, min(w + 1, n), n), ``A[k, i] = A_{i, i-k}``,
    C-contiguous, from SciPy's upper (``ab[w + i - j, j]``: the rows reversed) or lower (``ab[i - j, j]``:
    row k shifted by k) form; the diagonals k >= n, which the matrix does not have, left out."""
    xp = array_module(ab)
    n = ab.shape[-1]
    if not lower:
        return xp.ascontiguousarray(ab[..., ::-1, :][..., :n, :])
    out = xp.zeros_like(ab[..., :n, :])
    for k in range(out.shape[-2]):
        out[..., k, k:] = ab[..., k, :n - k]
    return out


def scipy_band(L, lower, rows=None):
    """gvae's lower storage of a band (L[k, i] = L_{i, i-k}) as SciPy's of ``rows`` rows (default: L's;
    more: the diagonals that the matrix does not have, zero): L itself in ``lower`` form (``c[k, j] =
    L[j + k, j]``), else its transpose U = L^T in upper form (``c[w + i - j, j] = U[i, j]``)."""
    xp = array_module(L)
    n, have = L.shape[-1], L.shape[-2]
    rows = have if rows is None else rows
    out = xp.zeros(L.shape[:-2] + (rows, n), L.dtype)
    for k in range(have):
        if lower:
            out[..., k, :n - k] = L[..., k, k:]
        else:
            out[..., rows - 1 - k, :] = L[..., k, :]
    return out


def _factor(name, ab, lower, check_finite):
    """The lower Cholesky factor, in gvae's storage, of the symmetric positive definite band ``ab``."""
    _finite(name, "ab", ab, check_finite)
    check_bands(name, ab)
    band = gvae_band(ab, lower)
    try:
        return band_cholesky(band, full_band(band.shape[-2] - 1))
    except ValueError as e:
        message = str(e).replace("band_cholesky", name).replace(": A is", ": ab is")
        if "not positive definite" in message:
            raise LinAlgError(message) from None
        raise ValueError(message) from None


def cholesky_banded(ab, overwrite_ab=False, lower=False, check_finite=True):
    """The Cholesky factor of the symmetric positive definite band matrix ``ab`` (*batch, u + 1, n), in the
    same form: U with A = U^T U in upper form, or with ``lower=True`` L with A = L L^T in lower form (zeros in
    the slots outside the matrix). O(n u^2) per matrix. Not positive definite: :class:`LinAlgError` naming
    the batch index and the row. NumPy and CuPy arrays."""
    ab = _float("cholesky_banded", "ab", ab)
    return scipy_band(_factor("cholesky_banded", ab, lower, check_finite), lower, ab.shape[-2])


def _cho_solve(name, L, b, ab_like):
    """x = (L L^T)^-1 b, L in gvae's lower storage (*batch, w + 1, n), b as :func:`_rhs` takes it."""
    n = L.shape[-1]
    rhs, batch, out_shape = _rhs(name, ab_like, b)
    xp = array_module(rhs)
    Lb = _batched(L, batch)
    # gvae's band solves take right-hand sides (k, F, n): samples first, factors second (for one right-hand
    # side a reshape, else a transposed copy)
    F, _, k = rhs.shape
    v = rhs.reshape(1, F, n) if k == 1 else xp.ascontiguousarray(rhs.transpose(2, 0, 1))
    offsets = full_band(L.shape[-2] - 1)
    x = band_solve_t(Lb, offsets, band_solve(Lb, offsets, v))
    return (x.reshape(F, n, 1) if k == 1 else xp.ascontiguousarray(x.transpose(1, 2, 0))).reshape(out_shape)


def solveh_banded(ab, b, overwrite_ab=False, overwrite_b=False, lower=False, check_finite=True):
    """x with A x = b for the symmetric positive definite band matrix A in ``ab`` (*batch, u + 1, n), upper
    form or with ``lower=True`` lower form: its Cholesky factor, then two band solves, O(n u (u + k)) per
    system. Not positive definite: :class:`LinAlgError`. NumPy and CuPy arrays."""
    name = "solveh_banded"
    ab, b = _common(name, _float(name, "ab", ab), _float(name, "b", b))
    _finite(name, "b", b, check_finite)
    return _cho_solve(name, _factor(name, ab, lower, check_finite), b, ab)


def factor_and_form(name, cb_and_lower):
    """SciPy's ``(cb, lower)`` checked to be a pair."""
    try:
        cb, lower = cb_and_lower
    except (TypeError, ValueError):
        raise ValueError(f"{name}: the first argument must be (cb, lower), as cholesky_banded's factor and its "
                         "form") from None
    return cb, lower


def cho_solve_banded(cb_and_lower, b, overwrite_b=False, check_finite=True):
    """x with A x = b from A's Cholesky factor ``(cb, lower)`` as :func:`cholesky_banded` returns it.
    NumPy and CuPy arrays."""
    name = "cho_solve_banded"
    cb, lower = factor_and_form(name, cb_and_lower)
    cb, b = _common(name, _float(name, "cb", cb), _float(name, "b", b))
    _finite(name, "cb", cb, check_finite)
    _finite(name, "b", b, check_finite)
    check_bands(name, cb)
    L = gvae_band(cb, bool(lower))
    if not bool((L[..., 0, :] > 0).all()):
        raise LinAlgError(f"{name}: the factor's diagonal must be > 0 (a Cholesky factor of a positive definite "
                          "matrix)")
    return _cho_solve(name, L, b, cb)


def logdeth_banded(ab, lower=False, check_finite=True):
    """log det A of the symmetric positive definite band matrix A in ``ab`` (*batch, u + 1, n), upper form or
    with ``lower=True`` lower form: 2 sum_i log L_ii of its Cholesky factor, O(n u^2); shape ``batch``.
    Not positive definite: :class:`LinAlgError`. NumPy and CuPy arrays."""
    name = "logdeth_banded"
    ab = _float(name, "ab", ab)
    return 2 * band_logdet(_factor(name, ab, lower, check_finite))


def matmul_banded(l_and_u, ab, x, check_finite=True):
    """A x for the general band matrix A of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n) and x
    (*batch, n) or (*batch, n, k) (as b of :func:`solve_banded`): y_i = sum_j ab[u + i - j, j] x_j, one
    pass per diagonal, O(n (l + u + 1) k). NumPy and CuPy arrays."""
    name = "matmul_banded"
    lower, upper = band_counts(name, l_and_u)
    ab, x = _common(name, _float(name, "ab", ab), _float(name, "x", x))
    check_bands(name, ab, (lower, upper))
    _finite(name, "ab", ab, check_finite)
    _finite(name, "x", x, check_finite)
    lay = layout(name, ab.shape, x.shape)
    broadcast_to = array_module(ab).broadcast_to  # (views: the product only reads them)
    y = band_product(flat(ab, lay.batch, broadcast_to), flat(x[..., None] if lay.vector else x, lay.batch,
                                                             broadcast_to), lower, upper)
    return y.reshape(lay.out)


def band_product(ab, x, lower, upper):
    """y = A x for ab (F, l + u + 1, n) and x (F, n, k) of one dtype and device: row r of ab is the diagonal
    j - i = u - r, so y[i] += ab[r, i + u - r] x[i + u - r] over the rows i where that column exists."""
    xp = array_module(ab)
    n = ab.shape[-1]
    y = xp.zeros(x.shape, x.dtype)
    for r in range(lower + upper + 1):
        d = upper - r  # column j = i + d
        lo, hi = max(0, -d), min(n, n - d)
        if lo < hi:
            y[:, lo:hi] += ab[:, r, lo + d:hi + d, None] * x[:, lo + d:hi + d]
    return y


def _index_range(name, select_range, n):
    """``select='i'``'s (lo, hi) checked: two ints with 0 <= lo <= hi < n."""
    try:
        lo, hi = (int(v) for v in select_range)
    except (TypeError, ValueError):
        lo, hi = -1, -1
    if not 0 <= lo <= hi < n:
        raise ValueError(f"{name}: select='i' takes select_range (lo, hi), ints with 0 <= lo <= hi < n = {n}; "
                         f"got {select_range!r}")
    return lo, hi


def _eig(name, a_band, lower, vectors, select, select_range, check_finite, max_ev=0):
    """SciPy's ``eig_banded`` on each matrix of the batch: (eigenvalues (*batch, m), eigenvectors (*batch, n, m)
    or None), m = n for ``select='a'``, hi - lo + 1 for ``'i'`` and (lo, hi); ``'v'`` on one matrix only."""
    a = _float(name, "a_band", a_band)
    if array_module(a) is not np:
        raise TypeError(f"{name}: a_band is a {type(a).__module__} array; the banded eigenvalue routine is "
                        "LAPACK's (through SciPy), on NumPy arrays only")
    check_bands(name, a)
    _finite(name, "a_band", a, check_finite)
    n, batch = a.shape[-1], a.shape[:-2]
    if select not in ("a", "i", "v"):
        raise ValueError(f"{name}: select must be 'a', 'i' or 'v' (SciPy's), got {select!r}")
    if select == "v" and batch:
        raise ValueError(f"{name}: select='v' gives each matrix its own number of eigenvalues; a batch "
                         f"{batch} takes select='a' or select='i'")
    lo, hi = (0, n - 1) if select != "i" else _index_range(name, select_range, n)
    # (the diagonals k >= n, which the matrix does not have, left out: SciPy's select='i' misreads them)
    a = a[..., :n, :] if lower else a[..., max(0, a.shape[-2] - n):, :]
    flat_a = a.reshape((-1,) + a.shape[-2:])
    values = np.empty((flat_a.shape[0], hi - lo + 1), a.dtype)
    vecs = np.empty((flat_a.shape[0], n, hi - lo + 1), a.dtype) if vectors else None
    for f, matrix in enumerate(flat_a):
        try:
            got = scipy.linalg.eig_banded(matrix, lower=lower, eigvals_only=not vectors, select=select,
                                          select_range=select_range, max_ev=max_ev, check_finite=False)
        except np.linalg.LinAlgError as e:
            raise LinAlgError(f"{name}: LAPACK did not converge{_index(batch, f)} ({e})") from None
        if select == "v":
            return got
        if vectors:
            values[f], vecs[f] = got
        else:
            values[f] = got
    values = values.reshape(batch + values.shape[1:])
    return (values, vecs.reshape(batch + vecs.shape[1:])) if vectors else values


def eig_banded(a_band, lower=False, eigvals_only=False, overwrite_a_band=False, select="a", select_range=None,
               max_ev=0, check_finite=True):
    """The eigenvalues (*batch, m), ascending, and eigenvectors (*batch, n, m), orthonormal columns, of the
    symmetric band matrix in ``a_band`` (*batch, u + 1, n), upper form or with ``lower=True`` lower form:
    :func:`scipy.linalg.eig_banded` (LAPACK's sbevd/sbevx) on each matrix, O(n^2 u) each (O(n^3) with
    eigenvectors). ``select`` 'a' (all, m = n) or 'i' with ``select_range`` (lo, hi) (those indices, m = hi
    - lo + 1) on batches; 'v' (a range of values) on one matrix. NumPy arrays only."""
    return _eig("eig_banded", a_band, lower, not eigvals_only, select, select_range, check_finite, max_ev)


def eigvals_banded(a_band, lower=False, overwrite_a_band=False, select="a", select_range=None, check_finite=True):
    """The eigenvalues of the symmetric band matrix in ``a_band`` (*batch, u + 1, n), ascending, shape
    (*batch, m): :func:`eig_banded` without eigenvectors (:func:`scipy.linalg.eigvals_banded`). NumPy arrays
    only."""
    return _eig("eigvals_banded", a_band, lower, False, select, select_range, check_finite)


def every_eigenvalue(name, select):
    """The fronts' ``select``: 'a' (every eigenvalue) only."""
    if select != "a":
        raise ValueError(f"{name}: the PyTorch and JAX fronts take select='a' (every eigenvalue), got {select!r}; "
                         "gvae.linalg.eigvals_banded takes 'i' and 'v' on NumPy arrays")

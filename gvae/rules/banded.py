"""The derivatives of :mod:`gvae.linalg`'s functions in both arguments, written once for gvae.torch and
gvae.jax over NumPy or CuPy arrays: each ``*_vjp`` gives the gradients from the output's gradient ``g``,
each ``*_jvp`` the output's tangent from the inputs' tangents (None: zero).

Band storage is SciPy's throughout (:mod:`gvae.linalg`); for A x = b with x = A^-1 b::

    general A:    gb = A^-T g,   gA[i, j] = -gb_i x_j on the band          (A^T: the band (u, l), transposed)
    symmetric A:  gb = A^-1 g,   gA[i, j] = -(gb_i x_j + gb_j x_i) on the stored triangle (i != j; once on
                                 the diagonal), each stored entry standing for A[i, j] and A[j, i]
    y = A x:      gx = A^T g,    gA[i, j] = g_i x_j on the band
    log det A:    gA = g A^-1 on the stored triangle (off-diagonals twice), from the Cholesky factor's
                  gradient (:func:`gvae.kernels.band.band_cholesky_grad`)
    A = L L^T:    dL from dA = dL L^T + L dL^T, column by column (:func:`cholesky_banded_jvp`)
    eigenvalues:  gA = sum_k g_k v_k v_k^T on the stored triangle (off-diagonals twice), dlam_k = v_k^T dA v_k
    x = (L L^T)^-1 b:  gb = (L L^T)^-1 g, gL[i, j] = -(gb_i (L^T x)_j + x_i (L^T gb)_j) on L's band

and the tangents dx = A^-1 (db - dA x), dy = dA x + A dx. Every right-hand side is (F, n, k) and every band
(F, rows, n), the batch flattened and broadcast (:func:`gvae.linalg` takes care of shapes): the callers
flatten and reduce (:func:`gvae.linalg.batched_call`). :data:`FUNCTIONS` holds each function with its
rules in the one form that the fronts wrap."""
from typing import Callable, NamedTuple

from .. import linalg
from ..kernels import array_module
from ..kernels.band import band_cholesky, band_cholesky_grad, band_logdet_grad, band_matvec_t, full_band

__all__ = ["transpose_banded", "band_outer", "solve_banded_vjp", "solve_banded_jvp", "matmul_banded_vjp",
           "matmul_banded_jvp", "solveh_banded_vjp", "solveh_banded_jvp", "cholesky_banded_vjp",
           "cholesky_banded_jvp", "cho_solve_banded_vjp", "cho_solve_banded_jvp", "logdeth_banded_vjp",
           "logdeth_banded_jvp", "eigvals_banded_vjp", "eigvals_banded_jvp", "Function", "FUNCTIONS"]


def transpose_banded(ab, lower, upper):
    """A^T in the storage of the band (u, l): abT[l + i - j, j] = A[j, i] = ab[u + j - i, i], row r of abT
    being ab's row l + u - r shifted by r - l columns (zeros where the column does not exist)."""
    xp = array_module(ab)
    out = xp.zeros_like(ab)
    n = ab.shape[-1]
    for r in range(lower + upper + 1):
        s = r - lower  # abT[r, j] = ab[l + u - r, j + s]
        lo, hi = max(0, -s), min(n, n - s)
        if lo < hi:
            out[..., r, lo:hi] = ab[..., lower + upper - r, lo + s:hi + s]
    return out


def band_outer(a, c, lower, upper, scale):
    """scale * sum_k a[i, k] c[j, k] at each slot of the band (l, u), in its storage: out[u + i - j, j]; a
    and c (F, n, k) -> (F, l + u + 1, n)."""
    xp = array_module(a)
    F, n, _ = a.shape
    out = xp.zeros((F, lower + upper + 1, n), a.dtype)
    for r in range(lower + upper + 1):
        d = r - upper  # i = j + d
        lo, hi = max(0, -d), min(n, n - d)
        if lo < hi:
            out[:, r, lo:hi] = scale * (a[:, lo + d:hi + d] * c[:, lo:hi]).sum(axis=-1)
    return out


def _symmetric_outer(a, c, w, lower, scale):
    """scale * (a c^T + c a^T) on the stored triangle of a symmetric band of w off-diagonals (the diagonal
    once: scale * a_i c_i... summed over the right-hand sides), in SciPy's upper or ``lower`` form."""
    up = band_outer(a, c, 0, w, scale) + band_outer(c, a, 0, w, scale)  # upper form: rows w - d, d = j - i
    up[:, w] *= 0.5
    return _other_form(up, False) if lower else up


def _other_form(band, lower):
    """A triangular band of w off-diagonals in SciPy's other form: given in ``lower`` form (w, 0), its
    transpose in upper form (0, w), and the other way round."""
    w = band.shape[-2] - 1
    return transpose_banded(band, w, 0) if lower else transpose_banded(band, 0, w)


def _symmetric_general(ab, lower):
    """The symmetric band in ``ab`` (upper or lower form, w off-diagonals) as a general band (w, w)."""
    up = _other_form(ab, True) if lower else ab
    return array_module(ab).concatenate([up, _other_form(up, False)[..., 1:, :]], axis=-2)


def solve_banded_vjp(lower, upper, ab, x, g):
    """(gab, gb) of x = solve_banded((l, u), ab, b), ab (F, l + u + 1, n), x and g (F, n, k)."""
    gb = linalg.solve_banded((upper, lower), transpose_banded(ab, lower, upper), g, check_finite=False)
    return band_outer(gb, x, lower, upper, -1.0), gb


def solve_banded_jvp(lower, upper, ab, x, dab, db):
    """dx = A^-1 (db - dA x) (dab or db None: zero)."""
    rhs = array_module(x).zeros_like(x) if db is None else db
    if dab is not None:
        rhs = rhs - linalg.band_product(dab, x, lower, upper)
    return linalg.solve_banded((lower, upper), ab, rhs, check_finite=False)


def matmul_banded_vjp(lower, upper, ab, x, g):
    """(gab, gx) of y = matmul_banded((l, u), ab, x)."""
    gx = linalg.band_product(transpose_banded(ab, lower, upper), g, upper, lower)
    return band_outer(g, x, lower, upper, 1.0), gx


def matmul_banded_jvp(lower, upper, ab, x, dab, dx):
    """dy = dA x + A dx."""
    dy = array_module(x).zeros_like(x)
    if dab is not None:
        dy = dy + linalg.band_product(dab, x, lower, upper)
    if dx is not None:
        dy = dy + linalg.band_product(ab, dx, lower, upper)
    return dy


def solveh_banded_vjp(ab, lower, x, g):
    """(gab, gb) of x = solveh_banded(ab, b, lower=lower)."""
    gb = linalg.solveh_banded(ab, g, lower=lower, check_finite=False)
    return _symmetric_outer(gb, x, ab.shape[-2] - 1, lower, -1.0), gb


def solveh_banded_jvp(ab, lower, x, dab, db):
    """dx = A^-1 (db - dA x), dA the symmetric band of dab's triangle."""
    rhs = array_module(x).zeros_like(x) if db is None else db
    if dab is not None:
        w = ab.shape[-2] - 1
        rhs = rhs - linalg.band_product(_symmetric_general(dab, lower), x, w, w)
    return linalg.solveh_banded(ab, rhs, lower=lower, check_finite=False)


def _factor(ab, lower):
    """The lower Cholesky factor of ab in gvae's storage (L[k, i] = L_{i, i-k})."""
    band = linalg.gvae_band(ab, lower)
    return band_cholesky(band, full_band(band.shape[-2] - 1))


def cholesky_banded_vjp(ab, lower, c, g):
    """gab of c = cholesky_banded(ab, lower=lower) from the factor c and its gradient g, in ab's form."""
    L, gL = (linalg.gvae_band(v, lower) for v in (c, g))
    return linalg.scipy_band(band_cholesky_grad(L, full_band(L.shape[-2] - 1), gL), lower, c.shape[-2])


def cholesky_banded_jvp(ab, lower, c, dab):
    """dc of c = cholesky_banded(ab, lower=lower), in c's form: dA = dL L^T + L dL^T on the band, solved
    for dL column by column in the factor's own order (Crout's), for column j and a = 0..w::

        r_a = dA[j + a, j] - sum_{s=1..w} (dL[j + a, j - s] L[j, j - s] + L[j + a, j - s] dL[j, j - s])
        dL[j, j] = r_0 / (2 L[j, j]),    dL[j + a, j] = (r_a - L[j + a, j] dL[j, j]) / L[j, j]

    n steps of O(F w^2) over the batch (the recursion is sequential in j)."""
    xp = array_module(c)
    F, rows, n = c.shape
    w = rows - 1
    # C[:, w + j, a] = L[j + a, j]: SciPy's lower form transposed, after w zero columns (j - s < 0) and
    # padded to 2 w + 1 entries a column, so that L[j + a, j - s] = C[:, w + j - s, a + s] always exists
    C = xp.zeros((F, n + w, 2 * w + 1), c.dtype)
    C[:, w:, :rows] = (c if lower else _other_form(c, False)).transpose(0, 2, 1)
    dC = xp.zeros_like(C)
    dA = (dab if lower else _other_form(dab, False)).transpose(0, 2, 1)
    s = xp.arange(1, rows)
    a = xp.arange(rows)
    for j in range(n):
        near = (C[:, w + j - s, s], dC[:, w + j - s, s])  # L[j, j - s], dL[j, j - s]: (F, w)
        far = (C[:, (w + j - s)[:, None], a + s[:, None]], dC[:, (w + j - s)[:, None], a + s[:, None]])
        r = dA[:, j] - (far[1] * near[0][..., None]).sum(axis=1) - (far[0] * near[1][..., None]).sum(axis=1)
        diagonal = C[:, w + j, 0]
        d0 = r[:, 0] / (2 * diagonal)
        dC[:, w + j, :rows] = (r - C[:, w + j, :rows] * d0[:, None]) / diagonal[:, None]
    dL = xp.where(a[:, None] + xp.arange(n) < n, dC[:, w:, :rows].transpose(0, 2, 1), 0.0)  # (outside: zero)
    return dL if lower else _other_form(dL, True)


def cho_solve_banded_vjp(cb, lower, x, g):
    """(gcb, gb) of x = cho_solve_banded((cb, lower), b): gL[k, i] = -(gb_i (L^T x)_{i-k} + x_i (L^T
    gb)_{i-k}) in gvae's storage, then in cb's form (upper: U = L^T, whose gradient is gL^T)."""
    xp = array_module(cb)
    L = linalg.gvae_band(cb, lower)
    w = cb.shape[-2] - 1
    gb = linalg.cho_solve_banded((cb, lower), g, check_finite=False)
    offsets = full_band(L.shape[-2] - 1)
    # L^T v for every right-hand side: gvae's band products take (k, F, n)
    Ltx, Ltg = (xp.ascontiguousarray(band_matvec_t(L, offsets, xp.ascontiguousarray(v.transpose(2, 0, 1)))
                                     .transpose(1, 2, 0)) for v in (x, gb))
    # gL[i, j] = -(gb_i Ltx_j + x_i Ltg_j): in SciPy's lower form, band_outer of (l = w, u = 0)
    lower_form = band_outer(gb, Ltx, w, 0, -1.0) + band_outer(x, Ltg, w, 0, -1.0)
    return (lower_form if lower else _other_form(lower_form, True)), gb


def cho_solve_banded_jvp(cb, lower, x, dcb, db):
    """dx = A^-1 (db - (dL L^T + L dL^T) x), A = L L^T."""
    xp = array_module(x)
    rhs = xp.zeros_like(x) if db is None else db
    if dcb is not None:
        w = cb.shape[-2] - 1
        # L and dL as general bands (w, 0), SciPy's lower form (the upper form holds U = L^T)
        Lg, dLg = (v if lower else _other_form(v, False) for v in (cb, dcb))
        Ltx, dLtx = (linalg.band_product(_other_form(v, True), x, 0, w) for v in (Lg, dLg))
        rhs = rhs - linalg.band_product(dLg, Ltx, w, 0) - linalg.band_product(Lg, dLtx, w, 0)
    return linalg.cho_solve_banded((cb, lower), rhs, check_finite=False)


def _logdet_unit_gradient(ab, lower):
    """d log det A / d ab: A^-1 on the stored triangle, each off-diagonal slot standing for two entries."""
    L = _factor(ab, lower)
    offsets = full_band(L.shape[-2] - 1)
    xp = array_module(ab)
    gL = band_logdet_grad(L, xp.full(L.shape[:-2], 2.0, L.dtype))
    return linalg.scipy_band(band_cholesky_grad(L, offsets, xp.ascontiguousarray(gL)), lower, ab.shape[-2])


def logdeth_banded_vjp(ab, lower, g):
    """gab of logdeth_banded(ab, lower=lower): g[..., None, None] A^-1 on the stored triangle."""
    return g[..., None, None] * _logdet_unit_gradient(ab, lower)


def logdeth_banded_jvp(ab, lower, dab):
    """d log det A = tr(A^-1 dA), each stored slot of dab weighed by its entry of the gradient."""
    return (_logdet_unit_gradient(ab, lower) * dab).sum(axis=(-2, -1))


def _eigenvectors(ab, lower):
    """The eigenvectors (F, n, n) of the symmetric bands ab (F, w + 1, n), columns in ascending eigenvalues."""
    return linalg.eig_banded(ab, lower=lower, check_finite=False)[1]


def eigvals_banded_vjp(ab, lower, g):
    """gab of lam = eigvals_banded(ab, lower=lower), g (F, n): sum_k g_k v_k v_k^T on the stored triangle
    (off-diagonals twice), v_k the eigenvectors (distinct eigenvalues: a repeated one has no derivative)."""
    V = _eigenvectors(ab, lower)
    return _symmetric_outer(V * g[:, None, :], V, ab.shape[-2] - 1, lower, 1.0)


def eigvals_banded_jvp(ab, lower, dab):
    """dlam_k = v_k^T dA v_k, dA the symmetric band of dab's triangle."""
    V = _eigenvectors(ab, lower)
    w = ab.shape[-2] - 1
    return (V * linalg.band_product(_symmetric_general(dab, lower), V, w, w)).sum(axis=-2)


class Function(NamedTuple):
    """One of :mod:`gvae.linalg`'s functions on flattened batches, as gvae.torch.linalg and gvae.jax.linalg
    wrap it: ``inputs`` names its arrays, the band (F, rows, n) first, then the right-hand sides (F, n, k)
    if any; ``params`` its static arguments, ("l", "u") or ("lower",).

    ``forward(params, check_finite, *inputs)`` -> output; ``vjp(params, inputs, output, g)`` -> one gradient
    per input; ``jvp(params, inputs, output, tangents)`` -> the output's tangent (a tangent None: zero);
    ``shape(*input_shapes)`` -> the output's shape."""
    inputs: tuple
    params: tuple
    forward: Callable
    vjp: Callable
    jvp: Callable
    shape: Callable


def _rhs_shape(ab, b):
    return b


FUNCTIONS = {
    "solve_banded": Function(
        ("ab", "b"), ("l", "u"),
        lambda p, check, ab, b: linalg.solve_banded(p, ab, b, check_finite=check),
        lambda p, inputs, x, g: solve_banded_vjp(*p, inputs[0], x, g),
        lambda p, inputs, x, t: solve_banded_jvp(*p, inputs[0], x, *t), _rhs_shape),
    "matmul_banded": Function(
        ("ab", "x"), ("l", "u"),
        lambda p, check, ab, x: linalg.matmul_banded(p, ab, x, check_finite=check),
        lambda p, inputs, y, g: matmul_banded_vjp(*p, *inputs, g),
        lambda p, inputs, y, t: matmul_banded_jvp(*p, *inputs, *t), _rhs_shape),
    "solveh_banded": Function(
        ("ab", "b"), ("lower",),
        lambda p, check, ab, b: linalg.solveh_banded(ab, b, lower=p[0], check_finite=check),
        lambda p, inputs, x, g: solveh_banded_vjp(inputs[0], *p, x, g),
        lambda p, inputs, x, t: solveh_banded_jvp(inputs[0], *p, x, *t), _rhs_shape),
    "cholesky_banded": Function(
        ("ab",), ("lower",),
        lambda p, check, ab: linalg.cholesky_banded(ab, lower=p[0], check_finite=check),
        lambda p, inputs, c, g: (cholesky_banded_vjp(inputs[0], *p, c, g),),
        lambda p, inputs, c, t: cholesky_banded_jvp(inputs[0], *p, c, *t), lambda ab: ab),
    "cho_solve_banded": Function(
        ("cb", "b"), ("lower",),
        lambda p, check, cb, b: linalg.cho_solve_banded((cb, p[0]), b, check_finite=check),
        lambda p, inputs, x, g: cho_solve_banded_vjp(inputs[0], *p, x, g),
        lambda p, inputs, x, t: cho_solve_banded_jvp(inputs[0], *p, x, *t), _rhs_shape),
    "logdeth_banded": Function(
        ("ab",), ("lower",),
        lambda p, check, ab: linalg.logdeth_banded(ab, lower=p[0], check_finite=check),
        lambda p, inputs, out, g: (logdeth_banded_vjp(inputs[0], *p, g),),
        lambda p, inputs, out, t: logdeth_banded_jvp(inputs[0], *p, *t), lambda ab: ab[:1]),
    "eigvals_banded": Function(
        ("a_band",), ("lower",),
        lambda p, check, ab: linalg.eigvals_banded(ab, lower=p[0], check_finite=check),
        lambda p, inputs, lam, g: (eigvals_banded_vjp(inputs[0], *p, g),),
        lambda p, inputs, lam, t: eigvals_banded_jvp(inputs[0], *p, *t), lambda ab: (ab[0], ab[-1])),
}

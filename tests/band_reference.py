"""Slow, obvious dense references for the banded-factor kernels, and random test factors."""
import numpy as np


def dense_from_band(L, offsets):
    """The dense lower-triangular (*batch, n, n) matrix stored in band form ``L`` (*batch, K, n)."""
    L = np.asarray(L, dtype=np.float64)
    n = L.shape[-1]
    D = np.zeros(L.shape[:-2] + (n, n))
    for k, o in enumerate(offsets):
        i = np.arange(o, n)
        D[..., i, i - o] = L[..., k, o:]
    return D


def band_from_dense(D, offsets):
    """Band storage (*batch, K, n) of the dense ``D`` on ``offsets``; nonexistent slots hold 0."""
    n = D.shape[-1]
    L = np.zeros(D.shape[:-2] + (len(offsets), n), dtype=D.dtype)
    for k, o in enumerate(offsets):
        i = np.arange(o, n)
        L[..., k, o:] = D[..., i, i - o]
    return L


def random_factor(rng, batch, offsets, n, dtype=np.float64, garbage=np.nan, off_scale=None):
    """A well-conditioned random factor: diagonal in [0.5, 2], off-diagonals uniform in
    +-off_scale (default 0.5 / sqrt(K)); nonexistent slots hold ``garbage`` (kernels must ignore it)."""
    K = len(offsets)
    scale = 0.5 / np.sqrt(K) if off_scale is None else off_scale
    L = rng.uniform(-scale, scale, size=tuple(batch) + (K, n))
    L[..., 0, :] = rng.uniform(0.5, 2.0, size=tuple(batch) + (n,))
    for k, o in enumerate(offsets):
        L[..., k, :min(o, n)] = garbage
    return L.astype(dtype)


def random_offsets(rng, n, max_k=5):
    """Strictly increasing offsets from 0 with every offset < n."""
    k = int(rng.integers(1, min(max_k, n) + 1))
    rest = np.sort(rng.choice(np.arange(1, n), size=k - 1, replace=False)) if k > 1 else []
    return (0,) + tuple(int(o) for o in rest)


def named_offsets(name, n):
    """The named stencils for a lattice with n pixels (cols chosen to divide n where possible)."""
    if name == "chain":
        return (0, 1)
    cols = next((c for c in range(max(3, int(np.sqrt(n))), n) if n % c == 0), None)
    if cols is None or cols + 1 >= n:
        return None
    if name == "grid":
        return (0, 1, cols)
    return (0, 1, cols - 1, cols, cols + 1)


def _solve_dense(A, b):
    """A^{-1} b with A (*batch, n, n) and b (*lead, n) broadcasting; right-hand sides that share a
    matrix are solved together as columns (one factorisation per matrix)."""
    b = np.asarray(b, np.float64)
    batch, n = A.shape[:-2], A.shape[-1]
    out = np.broadcast_shapes(batch, b.shape[:-1])
    extra = len(out) - len(batch)
    if out[extra:] == batch:
        bb = np.broadcast_to(b, out + (n,)).reshape((-1,) + batch + (n,))
        cols = np.moveaxis(bb, 0, -1)                        # (*batch, n, S)
        return np.moveaxis(np.linalg.solve(A, cols), -1, 0).reshape(out + (n,))
    return np.linalg.solve(A, b[..., None])[..., 0]


def solve_t_ref(L, offsets, b):
    return _solve_dense(np.swapaxes(dense_from_band(L, offsets), -1, -2), b)


def solve_ref(L, offsets, b):
    return _solve_dense(dense_from_band(L, offsets), b)


def matvec_ref(L, offsets, x):
    return (dense_from_band(L, offsets) @ np.asarray(x, np.float64)[..., None])[..., 0]


def matvec_t_ref(L, offsets, x):
    D = dense_from_band(L, offsets)
    return (np.swapaxes(D, -1, -2) @ np.asarray(x, np.float64)[..., None])[..., 0]


def logdet_ref(L):
    return np.sum(np.log(np.asarray(L, np.float64)[..., 0, :]), axis=-1)


def sigma_ref(L, offsets):
    D = dense_from_band(L, offsets)
    return np.linalg.inv(D @ np.swapaxes(D, -1, -2))


def trace_inv_ref(L, offsets):
    return np.trace(sigma_ref(L, offsets), axis1=-2, axis2=-1)


def trace_inv_grad_ref(L, offsets):
    """d tr(Sigma) / dL = -2 Sigma^2 L restricted to the band."""
    D = dense_from_band(L, offsets)
    S = sigma_ref(L, offsets)
    return band_from_dense(-2.0 * S @ S @ D, offsets)


def diag_inv_ref(L, offsets):
    return np.diagonal(sigma_ref(L, offsets), axis1=-2, axis2=-1)


def diag_inv_grad_ref(L, offsets, g):
    """sum_i g_i d Sigma_ii / dL = -2 Sigma diag(g) Sigma L restricted to the band."""
    D = dense_from_band(L, offsets)
    S = sigma_ref(L, offsets)
    return band_from_dense(-2.0 * (S * np.asarray(g, np.float64)[..., None, :]) @ S @ D, offsets)

"""Differentiable banded-factor operations: the :mod:`gvae.kernels.band` functions with their VJPs.

Every L-gradient is a band (same shape as L, zero in the slots that do not exist), computed in
O(n K) per right-hand side by :func:`gvae.kernels.band_outer`, which also sums over the samples that
share a factor; gradients wrt right-hand sides come back with the broadcast shape and are reduced by
the tape's ``unbroadcast``.

The forward functions take the kernels' ``check``: with ``check=False`` they skip the verdict on the
factor (a non-positive diagonal, NaN or inf), which on a device costs a read of two flags back to the
host per call; for factors positive by construction, whose NaNs reach a loss that is checked anyway.
"""
from .. import kernels
from ..autodiff import defvjp, defvjp_joint, primitive

__all__ = ["band_factor", "band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet",
           "band_trace_inv", "band_diag_inv", "band_cholesky"]


def _cast(g, L):
    """The upstream gradient in L's dtype (the kernels take one dtype)."""
    return g.astype(L.dtype, copy=False)


def _factor_forward(raw, off_mask, floor):
    """(L, softplus of the main diagonal): the value and what its gradient needs."""
    xp = kernels.array_module(raw)
    L = xp.empty_like(raw)
    diag = kernels.activation(raw[..., :1, :], "softplus")
    L[..., :1, :] = diag + raw.dtype.type(floor)
    L[..., 1:, :] = raw[..., 1:, :] * off_mask
    return L, diag


@primitive
def band_factor(raw, off_mask, floor):
    """A band factor L (*B, K, n) from unconstrained values raw (*B, K, n): the main diagonal softplus(raw)
    + floor (positive, bounded away from zero), the off-diagonals raw times ``off_mask`` (K - 1, n), a 0/1
    array of raw's dtype that removes the slots outside the matrix (and a lattice's wrap-around links).
    One tape entry where slicing, softplus, the floor, the mask and the concatenation took six (the same
    values, bit for bit)."""
    return _factor_forward(raw, off_mask, floor)[0]


def _factor_vjp(diag, argnums, raw, off_mask, floor):
    if 1 in argnums:
        raise ValueError("band_factor: no gradient with respect to the mask")

    def vjp(g):
        xp = kernels.array_module(g)
        graw = xp.empty(raw.shape, dtype=raw.dtype)
        graw[..., :1, :] = kernels.activation_grad(g[..., :1, :], diag, "softplus")
        graw[..., 1:, :] = g[..., 1:, :] * off_mask
        return graw, None, None
    return vjp


defvjp_joint(band_factor, _factor_vjp, forward=_factor_forward)


@primitive
def band_solve_t(L, offsets, b, check=True):
    """x with L^T x = b (see :func:`gvae.kernels.band_solve_t`)."""
    return kernels.band_solve_t(L, offsets, b, check=check)


def _solve_vjp(transposed):
    """The VJP maker of a substitution. x = L^{-T} b: u = L^{-1} g, gb = u, gL[k, i] = -sum_s x_i u_{i-o_k};
    x = L^{-1} b: u = L^{-T} g, gb = u, gL[k, i] = -sum_s u_i x_{i-o_k} (the other solve, the outer
    product's factors swapped)."""
    other = kernels.band_solve if transposed else kernels.band_solve_t

    def maker(ans, argnums, L, offsets, b, check=True):
        def vjp(g):
            u = other(L, offsets, _cast(g, L), check=False)
            pair = (ans, u) if transposed else (u, ans)
            gL = kernels.band_outer(*pair, offsets, L.shape[:-2], scale=-1.0) if 0 in argnums else None
            return gL, None, u
        return vjp
    return maker


defvjp_joint(band_solve_t, _solve_vjp(transposed=True))


@primitive
def band_solve(L, offsets, b, check=True):
    """x with L x = b (see :func:`gvae.kernels.band_solve`)."""
    return kernels.band_solve(L, offsets, b, check=check)


defvjp_joint(band_solve, _solve_vjp(transposed=False))


@primitive
def band_matvec(L, offsets, x, check=True):
    """L x (see :func:`gvae.kernels.band_matvec`)."""
    return kernels.band_matvec(L, offsets, x, check=check)


# y = L x:  gx = L^T g;  gL[k, i] = sum_s g_i x_{i - o_k}
defvjp(band_matvec,
       lambda ans, L, offsets, x, check=True: lambda g: kernels.band_outer(_cast(g, L), x, offsets, L.shape[:-2]),
       None,
       lambda ans, L, offsets, x, check=True: lambda g: kernels.band_matvec_t(L, offsets, _cast(g, L), check=False))


@primitive
def band_matvec_t(L, offsets, x, check=True):
    """L^T x (see :func:`gvae.kernels.band_matvec_t`)."""
    return kernels.band_matvec_t(L, offsets, x, check=check)


# y = L^T x:  gx = L g;  gL[k, i] = sum_s x_i g_{i - o_k}
defvjp(band_matvec_t,
       lambda ans, L, offsets, x, check=True: lambda g: kernels.band_outer(x, _cast(g, L), offsets, L.shape[:-2]),
       None,
       lambda ans, L, offsets, x, check=True: lambda g: kernels.band_matvec(L, offsets, _cast(g, L), check=False))


@primitive
def band_logdet(L, check=True):
    """log det L = sum_i log L_ii, shape ``L.shape[:-2]``."""
    return kernels.band_logdet(L, check=check)


defvjp(band_logdet, lambda ans, L, check=True: lambda g: kernels.band_logdet_grad(L, g, check=False))


@primitive
def band_trace_inv(L, offsets, check=True):
    """tr((L L^T)^{-1}), exact, shape ``L.shape[:-2]`` (see :func:`gvae.kernels.band_trace_inv`)."""
    return kernels.band_trace_inv(L, offsets, check=check)


defvjp(band_trace_inv,
       lambda ans, L, offsets, check=True: lambda g: kernels.band_trace_inv_grad(L, offsets, _cast(g, L), check=False))


@primitive
def band_diag_inv(L, offsets, check=True):
    """diag((L L^T)^{-1}), exact, shape ``L.shape[:-2] + (n,)`` (see :func:`gvae.kernels.band_diag_inv`)."""
    return kernels.band_diag_inv(L, offsets, check=check)


defvjp(band_diag_inv,
       lambda ans, L, offsets, check=True: lambda g: kernels.band_diag_inv_grad(L, offsets, _cast(g, L), check=False))


@primitive
def band_cholesky(A, offsets, check=True):
    """The Cholesky factor of the band matrix A on the full band offsets (0, ..., w) (see
    :func:`gvae.kernels.band_cholesky`)."""
    return kernels.band_cholesky(A, offsets, check=check)


# L = chol(A): gA by reverse mode through the factorisation, O(n w^2) (gvae.kernels.band_cholesky_grad)
defvjp(band_cholesky,
       lambda ans, A, offsets, check=True: lambda g: kernels.band_cholesky_grad(ans, offsets, _cast(g, ans), check=False))

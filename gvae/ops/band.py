"""Differentiable banded-factor operations: the :mod:`gvae.kernels.band` functions with their VJPs.

The VJPs of the solves and products are the rules of :mod:`gvae.rules.band` on gvae's kernels: every
L-gradient is a band (same shape as L, zero in the slots that do not exist), computed in O(n K) per
right-hand side by :func:`gvae.kernels.band_outer`, which also sums over the samples that share a factor;
gradients wrt right-hand sides come back with the broadcast shape and are reduced by the tape's
``unbroadcast``.

The forward functions take the kernels' ``check``: with ``check=False`` they skip the verdict on the
factor (a non-positive diagonal, NaN or inf), which on a device costs a read of two flags back to the
host per call; for factors positive by construction, whose NaNs reach a loss that is checked anyway.
"""
from functools import partial

from .. import kernels
from ..autodiff import defvjp, defvjp_joint, primitive
from ..rules.band import VJP, BandKernels

__all__ = ["band_factor", "band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet",
           "band_trace_inv", "band_diag_inv", "band_cholesky"]

# The kernels of the VJP rules, without the verdict on L (checked by the forward call).
_KERNELS = BandKernels(
    solve=partial(kernels.band_solve, check=False), solve_t=partial(kernels.band_solve_t, check=False),
    matvec=partial(kernels.band_matvec, check=False), matvec_t=partial(kernels.band_matvec_t, check=False),
    outer=lambda a, c, L, offsets, scale: kernels.band_outer(a, c, offsets, L.shape[:-2], scale=scale))


def _cast(g, L):
    """The upstream gradient in L's dtype (the kernels take one dtype)."""
    return g.astype(L.dtype, copy=False)


def _masked(x, off_mask):
    """A new (*B, K, n) array holding x's off-diagonals times ``off_mask`` (K - 1, n), its main diagonal
    left to the caller: a kernel per diagonal (x may be a view whose diagonals lie apart), so that a
    recorded training step holds them."""
    out = kernels.array_module(x).empty(x.shape, x.dtype)
    for k in range(1, x.shape[-2]):
        kernels.binary("multiply", x[..., k, :], off_mask[k - 1], out=out[..., k, :])
    return out


def _factor_forward(raw, off_mask, floor):
    """(L, softplus of the main diagonal): the value and what its gradient needs."""
    diag = kernels.activation(raw[..., :1, :], "softplus")
    L = _masked(raw, off_mask)
    kernels.binary("add", diag, raw.dtype.type(floor), out=L[..., :1, :])
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
        graw = _masked(_cast(g, raw), off_mask)
        kernels.copy_into(kernels.activation_grad(g[..., :1, :], diag, "softplus"), graw[..., :1, :])
        return graw, None, None
    return vjp


defvjp_joint(band_factor, _factor_vjp, forward=_factor_forward)


def _vector_vjp(rule):
    """The joint VJP maker of y = op(L, offsets, v): ``rule`` of :data:`gvae.rules.band.VJP` on the
    kernels, with the upstream gradient in L's dtype."""
    def maker(ans, argnums, L, offsets, v, check=True):
        want_L, want_v = 0 in argnums, 2 in argnums

        def vjp(g):
            gL, gv = rule(_KERNELS, L, offsets, v, ans, _cast(g, L), want_L, want_v)
            return gL, None, gv
        return vjp
    return maker


# Each operation is its kernel (signature and docstring, ``check`` keyword-only) made a primitive.
band_solve_t = defvjp_joint(primitive(kernels.band_solve_t), _vector_vjp(VJP["band_solve_t"]))
band_solve = defvjp_joint(primitive(kernels.band_solve), _vector_vjp(VJP["band_solve"]))
band_matvec_t = defvjp_joint(primitive(kernels.band_matvec_t), _vector_vjp(VJP["band_matvec_t"]))
band_matvec = defvjp_joint(primitive(kernels.band_matvec), _vector_vjp(VJP["band_matvec"]))

band_logdet = defvjp(primitive(kernels.band_logdet),
                     lambda ans, L, check=True: lambda g: kernels.band_logdet_grad(L, g, check=False))


@primitive
def band_trace_inv(L, offsets, *, check=True):
    """tr((L L^T)^-1) of the band factor L (*B, K, n) on ``offsets``, shape *B: :func:`gvae.kernels.band_trace_inv`.
    Its VJP is the selected inversion's kernel; where the forward ran on the dense inverse (the full family on
    the CPU) the tape keeps the factors' inverses, and the VJP does not invert them again."""
    return kernels.band_trace_inv(L, offsets, check=check)


@primitive
def band_diag_inv(L, offsets, *, check=True):
    """diag((L L^T)^-1), shape (*B, n): :func:`gvae.kernels.band_diag_inv`; its VJP as :func:`band_trace_inv`'s."""
    return kernels.band_diag_inv(L, offsets, check=check)


def _sigma_vjp(grad_kernel):
    """The joint VJP maker of tr or diag of Sigma: ``kept`` is what the traced forward kept of L."""
    def maker(kept, argnums, L, offsets, check=True):
        return lambda g: (grad_kernel(L, offsets, _cast(g, L), check=False, kept=kept), None)
    return maker


defvjp_joint(band_trace_inv, _sigma_vjp(kernels.band_trace_inv_grad),
             forward=lambda L, offsets, check=True: kernels.band_trace_inv(L, offsets, check=check, keep=True))
defvjp_joint(band_diag_inv, _sigma_vjp(kernels.band_diag_inv_grad),
             forward=lambda L, offsets, check=True: kernels.band_diag_inv(L, offsets, check=check, keep=True))
# L = chol(A) on the full band offsets (0, ..., w): gA by reverse mode through the factorisation, O(n w^2)
band_cholesky = defvjp(primitive(kernels.band_cholesky), lambda ans, A, offsets, check=True:
                       lambda g: kernels.band_cholesky_grad(ans, offsets, _cast(g, ans), check=False))

"""The reverse-mode derivatives (VJPs) of the band solves and products, written once for gvae's tape,
gvae.torch and gvae.jax in terms of the kernels each of them passes (:class:`BandKernels`).

For y = op(L, v) on the offsets o_k, with upstream gradient g of y's (broadcast) shape:

    x = L^-T b:  u = L^-1 g,  gb = u,  gL[k, i] = -sum_s x_i u_{i-o_k}
    x = L^-1 b:  u = L^-T g,  gb = u,  gL[k, i] = -sum_s u_i x_{i-o_k}
    y = L x:     gx = L^T g,           gL[k, i] = sum_s g_i x_{i-o_k}
    y = L^T x:   gx = L g,             gL[k, i] = sum_s x_i g_{i-o_k}

Each L-gradient is one ``outer``, O(n K) per right-hand side and summed over the samples s that share a
factor, so it comes back with L's shape; the gradient wrt v comes back with y's broadcast shape, for the
caller to reduce to v's. Every rule has the signature of :data:`VJP`'s entries.
"""
from typing import Callable, NamedTuple


class BandKernels(NamedTuple):
    """The kernels the rules call, on L (*batch, K, n) and offsets already checked by the forward call, so
    without the verdict on L: ``solve(L, offsets, v)`` (L^-1 v), ``solve_t`` (L^-T v), ``matvec`` (L v),
    ``matvec_t`` (L^T v), each of v (*lead, n) giving the broadcast (*, n), and ``outer(a, c, L, offsets,
    scale)``: scale * sum_s a_i c_{i-o_k}, a band of L's shape (L itself is read for its shape only)."""

    solve: Callable
    solve_t: Callable
    matvec: Callable
    matvec_t: Callable
    outer: Callable


def solve_t_vjp(kernels, L, offsets, b, x, g, want_L, want_b):
    """x = L^-T b: (gL, gb), each None where not wanted."""
    u = kernels.solve(L, offsets, g)
    return (kernels.outer(x, u, L, offsets, -1.0) if want_L else None), (u if want_b else None)


def solve_vjp(kernels, L, offsets, b, x, g, want_L, want_b):
    """x = L^-1 b: (gL, gb), each None where not wanted."""
    u = kernels.solve_t(L, offsets, g)
    return (kernels.outer(u, x, L, offsets, -1.0) if want_L else None), (u if want_b else None)


def matvec_vjp(kernels, L, offsets, x, y, g, want_L, want_x):
    """y = L x: (gL, gx), each None where not wanted."""
    gL = kernels.outer(g, x, L, offsets, 1.0) if want_L else None
    return gL, (kernels.matvec_t(L, offsets, g) if want_x else None)


def matvec_t_vjp(kernels, L, offsets, x, y, g, want_L, want_x):
    """y = L^T x: (gL, gx), each None where not wanted."""
    gL = kernels.outer(x, g, L, offsets, 1.0) if want_L else None
    return gL, (kernels.matvec(L, offsets, g) if want_x else None)


# operator name -> rule(kernels, L, offsets, v, y, g, want_L, want_v) -> (gL, gv) for y = op(L, offsets, v)
VJP = {"band_solve_t": solve_t_vjp, "band_solve": solve_vjp, "band_matvec_t": matvec_t_vjp,
       "band_matvec": matvec_vjp}

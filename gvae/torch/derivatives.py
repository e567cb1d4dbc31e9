"""The reverse-mode and forward-mode rules of every ``gvae::`` operator, registered with
:func:`gvae.torch.autograd._autograd`.

Backward passes run gvae's own VJP kernels, themselves operators (:mod:`gvae.torch.library`) so that the
backward traces too, the solves' and products' by the rules of :mod:`gvae.rules.band`: ``band_outer`` (the
L-gradient of every solve and product), ``band_logdet_grad``, ``band_trace_inv_grad`` and
``band_diag_inv_grad``; ``band_head``'s is ``band_head_grad`` (the maths: :mod:`gvae.rules.head`). Solves
and products are differentiable to any order (the VJP of ``band_outer`` is a pair of band products).
``band_trace_inv`` and ``band_diag_inv`` are differentiable once: gvae has no second-order kernel of the
selected inversion, so a double backward through them raises ``NotImplementedError``. ``band_diag_inv``
alone refuses forward mode (its tangent is not O(n K))."""
from functools import partial

import torch

from ..rules.band import VJP, BandKernels
from .autograd import _autograd, _call
from .checks import _broadcast_shapes


def _reduce(g, shape):
    """g summed down to ``shape`` (the gradient of a broadcast input), expanding first where g lacks
    axes that the input has."""
    shape = torch.Size(shape)
    if g.shape == shape:
        return g
    return g.expand(_broadcast_shapes(g.shape, shape)).sum_to_size(shape)


def _save_vector(ctx, inputs, output):
    L, offsets, v, _ = inputs
    ctx.offsets = offsets
    ctx.v_shape = v.shape
    return L, v, output


# The kernels of gvae.rules.band's VJPs: the operators, so that a backward traces (and differentiates) too.
_KERNELS = BandKernels(solve=lambda L, offsets, v: _call("band_solve", L, offsets, v, False),
                       solve_t=lambda L, offsets, v: _call("band_solve_t", L, offsets, v, False),
                       matvec=lambda L, offsets, v: _call("band_matvec", L, offsets, v, False),
                       matvec_t=lambda L, offsets, v: _call("band_matvec_t", L, offsets, v, False),
                       outer=partial(_call, "band_outer"))


def _vector_backward(rule):
    """The backward of a solve or product: ``rule`` of :data:`gvae.rules.band.VJP`, v's gradient reduced
    to v's shape."""
    def backward(ctx, g):
        L, v, y = ctx.saved_tensors
        gL, gv = rule(_KERNELS, L, ctx.offsets, v, y, g, ctx.needs_input_grad[0], ctx.needs_input_grad[2])
        return gL, None, (None if gv is None else _reduce(gv, ctx.v_shape)), None
    return backward


def _solve_jvp(transposed):
    """x = L^{-T} b: dx = L^{-T} (db - dL^T x); x = L^{-1} b: dx = L^{-1} (db - dL x). The tangent dL
    may have any diagonal (unchecked)."""
    solve, product = ("band_solve_t", "band_matvec_t") if transposed else ("band_solve", "band_matvec")

    def jvp(ctx, dL, _, db, __):
        L, _, x = ctx.saved_tensors
        r = None if dL is None else -_call(product, dL, ctx.offsets, x, False)
        r = db if r is None else r if db is None else db + r
        return _call(solve, L, ctx.offsets, r, False)
    return jvp


def _matvec_jvp(transposed):
    """y = L x: dy = dL x + L dx; y = L^T x: dy = dL^T x + L^T dx (bilinear in L and x)."""
    product = "band_matvec_t" if transposed else "band_matvec"

    def jvp(ctx, dL, _, dx, __):
        L, x, y = ctx.saved_tensors
        terms = ([] if dL is None else [_call(product, dL, ctx.offsets, x, False)]) + \
                ([] if dx is None else [_call(product, L, ctx.offsets, dx, False)])
        return terms[0].expand(y.shape) if len(terms) == 1 else terms[0] + terms[1]
    return jvp


for _name, _transposed in (("band_solve_t", True), ("band_solve", False)):
    _autograd(_name, _save_vector, _vector_backward(VJP[_name]), _solve_jvp(_transposed))
for _name, _transposed in (("band_matvec_t", True), ("band_matvec", False)):
    _autograd(_name, _save_vector, _vector_backward(VJP[_name]), _matvec_jvp(_transposed))


def _save_factor(ctx, inputs, output):
    ctx.offsets = inputs[1] if len(inputs) > 2 else None
    return (inputs[0],)


def _logdet_tangent(L, dL):
    """d log det L = sum_i dL_ii / L_ii."""
    return (dL[..., 0, :] / L[..., 0, :]).sum(-1)


def _logdet_jvp(ctx, dL, _):
    return _logdet_tangent(ctx.saved_tensors[0], dL)


_autograd("band_logdet", _save_factor,
          lambda ctx, g: (_call("band_logdet_grad", ctx.saved_tensors[0], g), None), _logdet_jvp)


def _trace_tangent(L, offsets, dL):
    """d tr(Sigma) = <G, dL> with G the gradient of tr(Sigma) (one VJP, O(n K w)); G is zero in the slots
    outside the matrix, so whatever the tangent holds there does not count."""
    G = _call("band_trace_inv_grad", L, offsets, L.new_ones(L.shape[:-2]), False)
    return torch.where(G != 0, G * dL, 0).sum((-2, -1))


def _trace_inv_jvp(ctx, dL, _, __):
    return _trace_tangent(ctx.saved_tensors[0], ctx.offsets, dL)


def _no_forward_mode(name, why):
    def jvp(ctx, *tangents):
        raise NotImplementedError(
            f"gvae.torch: forward-mode derivatives of {name} are not offered ({why}); use reverse mode "
            "(torch.autograd.grad, torch.func.grad or torch.func.jacrev)")
    return jvp


_autograd("band_trace_inv", _save_factor,
          lambda ctx, g: (_call("band_trace_inv_grad", ctx.saved_tensors[0], ctx.offsets, g, False), None, None),
          _trace_inv_jvp)
# diag(Sigma)'s tangent, -2 diag(Sigma dL L^-1), needs entries of Sigma and L^-1 outside the band: O(n^2)
# at least, where every other rule here is O(n K).
_autograd("band_diag_inv", _save_factor,
          lambda ctx, g: (_call("band_diag_inv_grad", ctx.saved_tensors[0], ctx.offsets, g, False), None, None),
          _no_forward_mode("band_diag_inv", "its tangent needs entries of the covariance outside the band, "
                                            "O(n^2) where gvae's kernels are O(n K)"))


def _save_outer(ctx, inputs, output):
    a, c, like, offsets, scale = inputs
    ctx.offsets, ctx.scale, ctx.a_shape, ctx.c_shape, ctx.like = offsets, scale, a.shape, c.shape, like
    return a, c


def _outer_backward(ctx, gG):
    """G[k, i] = s sum a_i c_{i-o_k}: ga = s (G-band) c = s band_matvec(gG, c), gc = s band_matvec_t(gG, a)
    (gG's diagonal is any sign: unchecked)."""
    a, c = ctx.saved_tensors
    ga = gc = None
    if ctx.needs_input_grad[0]:
        ga = _reduce(ctx.scale * _call("band_matvec", gG, ctx.offsets, c, False), ctx.a_shape)
    if ctx.needs_input_grad[1]:
        gc = _reduce(ctx.scale * _call("band_matvec_t", gG, ctx.offsets, a, False), ctx.c_shape)
    return ga, gc, None, None, None


def _outer_jvp(ctx, da, dc, *_):
    """G is bilinear in (a, c): dG = outer(da, c) + outer(a, dc), scaled alike."""
    a, c = ctx.saved_tensors
    terms = ([] if da is None else [_call("band_outer", da, c, ctx.like, ctx.offsets, ctx.scale)]) + \
            ([] if dc is None else [_call("band_outer", a, dc, ctx.like, ctx.offsets, ctx.scale)])
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


_autograd("band_outer", _save_outer, _outer_backward, _outer_jvp)


def _on_diagonal(diag, K):
    """The band (*batch, K, n) holding ``diag`` (*batch, n) on its main diagonal and zeros elsewhere,
    built out of place (an in-place write into zeros cannot be mapped by vmap)."""
    return torch.cat([diag[..., None, :], diag.new_zeros(diag.shape[:-1] + (K - 1, diag.shape[-1]))], -2)


def _save_logdet_grad(ctx, inputs, output):
    return inputs


def _logdet_grad_backward(ctx, gG):
    """G = g / L_0 on the main diagonal (zero elsewhere): elementwise, so written in PyTorch."""
    L, g = ctx.saved_tensors
    d = L[..., 0, :]
    h = gG[..., 0, :] / d
    gL = gg = None
    if ctx.needs_input_grad[0]:
        gL = _reduce(_on_diagonal(-h * g[..., None] / d, L.shape[-2]), L.shape)
    if ctx.needs_input_grad[1]:
        gg = _reduce(h.sum(-1), g.shape)
    return gL, gg


def _logdet_grad_jvp(ctx, dL, dg):
    """dG = dg / L_0 - g dL_0 / L_0^2 on the main diagonal, zero elsewhere."""
    L, g = ctx.saved_tensors
    d = L[..., 0, :]
    terms = ([] if dg is None else [dg[..., None] / d]) + \
            ([] if dL is None else [-g[..., None] * dL[..., 0, :] / (d * d)])
    return _on_diagonal(terms[0] if len(terms) == 1 else terms[0] + terms[1], L.shape[-2]).expand(L.shape)


_autograd("band_logdet_grad", _save_logdet_grad, _logdet_grad_backward, _logdet_grad_jvp)


def _no_double_backward(name, why="gvae has no second-order kernel of the selected inversion"):
    def backward(ctx, *grads):
        raise NotImplementedError(
            f"gvae.torch: double backward through {name} is not offered ({why}); use its first derivatives only")
    return backward


for _name in ("band_trace_inv", "band_diag_inv"):
    _autograd(f"{_name}_grad", lambda ctx, inputs, output: (), _no_double_backward(_name),
              _no_forward_mode(f"{_name}'s gradient", "gvae has no second-order kernel of the selected "
                                                      "inversion"))


# band_head: its backward is band_head_grad, its tangent the solve's, log-determinant's and trace's at once.

def _save_head(ctx, inputs, output):
    L, offsets, mu, eps = inputs[:4]
    ctx.offsets = offsets
    ctx.set_materialize_grads(False)  # an unused output's cotangent stays None: no work for it
    return L, mu, eps, output[0]


def _head_backward(ctx, gx, glq, gkl):
    L, mu, eps, x = ctx.saved_tensors
    gL, gmu, geps = _call("band_head_grad", L, ctx.offsets, mu, x, gx, glq, gkl)
    need = ctx.needs_input_grad
    if need[3]:
        geps = _reduce(geps, eps.shape)
        if glq is not None:
            geps = geps - _reduce(glq[..., None] * eps, eps.shape)
    return gL if need[0] else None, None, _reduce(gmu, mu.shape) if need[2] else None, geps if need[3] else None, None


def _head_jvp(ctx, dL, _, dmu, deps, __):
    """dx = L^-T (deps - dL^T x); d log q = d log det L - <eps, deps>; d KL = d tr(Sigma) / 2 + <mu, dmu> +
    d log det L."""
    L, mu, eps, x = ctx.saved_tensors
    r = None if dL is None else -_call("band_matvec_t", dL, ctx.offsets, x, False)
    r = deps if r is None else r if deps is None else deps + r
    dx = x.new_zeros(x.shape) if r is None else _call("band_solve_t", L, ctx.offsets, r, False).expand(x.shape)
    dlq = x.new_zeros(_broadcast_shapes(x.shape[:-1], mu.shape[:-1]))
    dkl = x.new_zeros(_broadcast_shapes(L.shape[:-2], mu.shape[:-1]))
    if dL is not None:
        dlogdet = _logdet_tangent(L, dL)
        dlq = dlq + dlogdet
        dkl = dkl + 0.5 * _trace_tangent(L, ctx.offsets, dL) + dlogdet
    if deps is not None:
        dlq = dlq - (eps * deps).sum(-1)
    if dmu is not None:
        dkl = dkl + (mu * dmu).sum(-1)
    return dx, dlq, dkl


_autograd("band_head", _save_head, _head_backward, _head_jvp)
# Its backward holds the selected inversion's gradient, which gvae cannot differentiate again.
_autograd("band_head_grad", lambda ctx, inputs, output: (), _no_double_backward("band_head"),
          _no_forward_mode("band_head's gradient", "gvae has no second-order kernel of the selected inversion"))

"""The differentiable functions of gvae.jax: each kernel call of :mod:`gvae.jax.bridge` under a
``jax.custom_vjp`` whose backward is a gvae kernel too.

Backward passes run gvae's own VJP kernels as :mod:`gvae.torch.derivatives` does, the solves' and products'
by the rules of :mod:`gvae.rules.band`: ``band_outer`` (the L-gradient of every solve and product),
``band_logdet_grad``, ``band_trace_inv_grad`` and ``band_diag_inv_grad``; ``band_head``'s are
:mod:`gvae.rules.head`'s. Reverse mode only, to first order: the callbacks have no JVP rule, so ``jvp``,
``jacfwd`` and a gradient of a gradient raise."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import band as _band
from ..kernels.backend import array_module
from ..rules import head
from ..rules.band import VJP, BandKernels
from ..rules.broadcast import unbroadcast
from .bridge import _like, _run, _run_many
from .checks import CHECKS


def _vector(name, L, offsets, v, check):
    """The forward kernel ``name`` (a solve or product) on L (*batch, K, n) and v (*lead, n)."""
    shape = CHECKS.vector(name, "v", L, v)
    kernel = getattr(_band, name)
    return _run(lambda L, v: kernel(L, offsets, v, check=check), shape, 1, [L, v], [2, 1])


def _outer(a, c, L, offsets, scale):
    """band_outer: ``scale * sum a_i c_{i - o_k}`` over the samples, summed to L's shape."""
    return _run(lambda L, a, c: _band.band_outer(a, c, offsets, L.shape[:-2], scale), L.shape, 2,
                 [L, a, c], [2, 1, 1], spread=True)


# The kernels of gvae.rules.band's VJPs, run as the forward ones.
_KERNELS = BandKernels(solve=partial(_vector, "band_solve", check=False),
                       solve_t=partial(_vector, "band_solve_t", check=False),
                       matvec=partial(_vector, "band_matvec", check=False),
                       matvec_t=partial(_vector, "band_matvec_t", check=False), outer=_outer)


def _vector_op(name):
    """The custom_vjp of a solve or product, its backward ``name``'s rule of :data:`gvae.rules.band.VJP`."""
    rule = VJP[name]

    @partial(jax.custom_vjp, nondiff_argnums=(1, 3))
    def op(L, offsets, v, check):
        return _vector(name, L, offsets, v, check)

    def fwd(L, offsets, v, check):
        out = _vector(name, L, offsets, v, check)
        return out, (L, v, out)

    def bwd(offsets, check, res, g):
        L, v, out = res
        gL, gv = rule(_KERNELS, L, offsets, v, out, g, True, True)
        return _like(gL, L), _like(unbroadcast(gv, v.shape), v)

    op.defvjp(fwd, bwd)
    return op


_VECTOR = {name: _vector_op(name) for name in VJP}


def _logdet_plain(L, check):
    return _run(lambda L: _band.band_logdet(L, check=check), L.shape[:-2], 0, [L], [2])


_logdet = jax.custom_vjp(_logdet_plain, nondiff_argnums=(1,))


def _logdet_fwd(L, check):
    return _logdet_plain(L, check), L


def _logdet_bwd(check, L, g):
    return (_like(_run(lambda L, g: _band.band_logdet_grad(L, g, check=False), L.shape, 2, [L, g], [2, 0],
                       spread=True), L),)


_logdet.defvjp(_logdet_fwd, _logdet_bwd)


def _sigma_op(name, per_row):
    """band_trace_inv (one number per factor) or, with ``per_row``, band_diag_inv (n per factor): the
    plain function and its custom_vjp."""
    kernel, grad = getattr(_band, name), getattr(_band, name + "_grad")

    def plain(L, offsets, check):
        shape = L.shape[:-2] + ((L.shape[-1],) if per_row else ())
        return _run(lambda L: kernel(L, offsets, check=check), shape, int(per_row), [L], [2])

    def fwd(L, offsets, check):
        return plain(L, offsets, check), L

    def bwd(offsets, check, L, g):
        return (_like(_run(lambda L, g: grad(L, offsets, g, check=False), L.shape, 2, [L, g], [2, int(per_row)],
                           spread=True), L),)

    op = jax.custom_vjp(plain, nondiff_argnums=(1, 2))
    op.defvjp(fwd, bwd)
    return plain, op


_SIGMA = {"band_trace_inv": _sigma_op("band_trace_inv", False), "band_diag_inv": _sigma_op("band_diag_inv", True)}


def _head_shapes(L, mu, eps):
    """The shapes of band_head's x and log q (see :func:`band_head`), checked."""
    x_shape = CHECKS.vector("band_head", "eps", L, eps)
    return x_shape, np.broadcast_shapes(x_shape[:-1], CHECKS.vector("band_head", "mu", L, mu)[:-1])


def _head_plain(L, offsets, mu, eps, check):
    """(x, log q, KL): the three kernels of :func:`gvae.rules.head.kernel_forward` in one callback, the rest
    (:func:`gvae.rules.head.combine`) in XLA."""
    x_shape, q_shape = _head_shapes(L, mu, eps)
    x, logdet, trace = _run_many(lambda L, eps: head.kernel_forward(_band, L, offsets, eps, check),
                                 [(x_shape, 1), (L.shape[:-2], 0), (L.shape[:-2], 0)], [L, eps], [2, 1], spread=True)
    log_q, kl = head.combine(logdet, trace, mu, eps)
    return x, jnp.broadcast_to(log_q, q_shape), kl  # z's batch is mu's too where mu's is wider


_head = jax.custom_vjp(_head_plain, nondiff_argnums=(1, 4))


def _head_fwd(L, offsets, mu, eps, check):
    out = _head_plain(L, offsets, mu, eps, check)
    return out, (L, mu, eps, out[0])


def _head_bwd(offsets, check, res, cotangents):
    """gL and eps's gradient through x from the four kernels of :func:`gvae.rules.head.kernel_backward` in
    one callback; the weights, mu's gradient and the reductions in XLA."""
    L, mu, eps, x = res
    gx, glq, gkl = cotangents
    det, half_trace, gmu = head.cotangents(L.shape[:-2], mu, glq, gkl)
    gL, geps = _run_many(lambda L, x, gx, det, half: head.kernel_backward(_band, array_module(L), L, offsets, x, gx,
                                                                          det, half),
                         [(L.shape, 2), (x.shape, 1)], [L, x, gx, det, half_trace], [2, 1, 1, 0, 0], spread=True)
    geps = unbroadcast(geps, eps.shape) - unbroadcast(glq[..., None] * eps, eps.shape)
    return _like(gL, L), _like(unbroadcast(gmu, mu.shape), mu), _like(geps, eps)


_head.defvjp(_head_fwd, _head_bwd)

"""The posterior's head of a VAE step on raw arrays: a reparameterised sample of q = N(mu, (L L^T)^-1),
its log-density and its KL to N(0, I) in one pass of gvae's band kernels, and their backward in one more.
The front ends' single operators (``gvae.torch.band_head``, ``gvae.jax.band_head``) call these:

    x = L^-T eps (z = mu + x),   log q(z) = log det L - |eps|^2 / 2 - n log(2 pi) / 2   (L^T (z - mu) = eps),
    KL(q || N(0, I)) = (tr Sigma + |mu|^2 - n) / 2 + log det L.

``band`` is :mod:`gvae.kernels.band` (any of its devices: NumPy or CuPy arrays); ``xp`` the arrays' module.
"""
import numpy as np

from .broadcast import unbroadcast
from .gaussian import LOG_2PI


def forward(band, xp, L, offsets, mu, eps, check=True):
    """(x, log_q, kl): x (eps's shape broadcast with L's batch, n); log_q of x's batch broadcast with mu's;
    kl of L's batch broadcast with mu's. The solve's verdict on L and eps (``check``) is the call's."""
    n = L.shape[-1]
    x = band.band_solve_t(L, offsets, eps, check=check)
    logdet = band.band_logdet(L, check=False)
    log_q = logdet - 0.5 * (eps * eps).sum(-1) - 0.5 * n * LOG_2PI
    kl = 0.5 * (band.band_trace_inv(L, offsets, check=False) + (mu * mu).sum(-1) - n) + logdet
    q_shape = np.broadcast_shapes(x.shape[:-1], kl.shape)  # shapes only: no array is made
    if log_q.shape != q_shape:  # mu's batch wider than L's and eps's: z's is
        log_q = xp.ascontiguousarray(xp.broadcast_to(log_q, q_shape))
    return x, xp.asarray(log_q), xp.asarray(kl)


def backward(band, xp, L, offsets, mu, x, gx=None, glq=None, gkl=None):
    """(gL, gmu, geps) for the cotangents (gx, glq, gkl) of :func:`forward`'s outputs, any of them None
    (zero): gL of L's shape; gmu of the KL's shape + (n,); geps = L^-1 gx of x's shape, eps's gradient
    through x (through log q it is -glq eps, an elementwise product the caller adds). The caller reduces
    gmu and geps to its arguments' shapes."""
    batch = L.shape[:-2]
    kl_shape = np.broadcast_shapes(batch, mu.shape[:-1])
    det = xp.zeros(batch, L.dtype)                # the weight of d log det L
    gL = geps = None
    if gx is not None:                            # x = L^-T eps (gvae.rules.band.solve_t_vjp)
        u = band.band_solve(L, offsets, gx, check=False)
        gL, geps = band.band_outer(x, u, offsets, batch, -1.0), u
    if glq is not None:
        det = det + unbroadcast(glq, batch)
    if gkl is None:
        gmu = xp.zeros(kl_shape + (L.shape[-1],), L.dtype)
    else:                                         # of the KL's shape, which mu's batch broadcasts to
        gmu = gkl[..., None] * mu
        g = unbroadcast(gkl, batch)
        det = det + g
        gt = band.band_trace_inv_grad(L, offsets, 0.5 * g, check=False)
        gL = gt if gL is None else gL + gt
    gd = band.band_logdet_grad(L, det, check=False)
    gL = gd if gL is None else gL + gd
    return gL, gmu, xp.zeros(x.shape, L.dtype) if geps is None else geps

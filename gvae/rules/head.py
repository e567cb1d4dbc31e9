"""The posterior's head of a VAE step: a reparameterised sample of q = N(mu, (L L^T)^-1), its log-density and
its KL to N(0, I) from three band kernels in one pass, and their backward from four in one more. The front
ends' single operators (``gvae.torch.band_head``, ``gvae.jax.band_head``) call these:

    x = L^-T eps (z = mu + x),   log q(z) = log det L - |eps|^2 / 2 - n log(2 pi) / 2   (L^T (z - mu) = eps),
    KL(q || N(0, I)) = (tr Sigma + |mu|^2 - n) / 2 + log det L.

The kernels' part (:func:`kernel_forward`, :func:`kernel_backward`) runs on raw arrays of any device through
``band`` (:mod:`gvae.kernels.band`); the elementwise rest (:func:`combine`, :func:`cotangents`) on any arrays
with NumPy's operators, so that gvae.jax leaves it to XLA, which fuses it, and runs only the kernels in its
callbacks.
"""
import numpy as np

from .broadcast import unbroadcast
from .gaussian import LOG_2PI


def kernel_forward(band, L, offsets, eps, check=True):
    """(x, log det L, tr Sigma): x = L^-T eps of eps's shape broadcast with L's batch, the other two of L's
    batch. The solve's verdict on L and eps (``check``) is the call's."""
    return (band.band_solve_t(L, offsets, eps, check=check), band.band_logdet(L, check=False),
            band.band_trace_inv(L, offsets, check=False))


def combine(logdet, trace, mu, eps):
    """(log_q, kl) from :func:`kernel_forward`'s log det L and tr Sigma: log_q of eps's batch broadcast with
    L's, kl of L's batch broadcast with mu's."""
    n = eps.shape[-1]
    log_q = logdet - 0.5 * (eps * eps).sum(-1) - 0.5 * n * LOG_2PI
    return log_q, 0.5 * (trace + (mu * mu).sum(-1) - n) + logdet


def forward(band, xp, L, offsets, mu, eps, check=True):
    """(x, log_q, kl), log_q of x's batch broadcast with mu's (``xp`` the arrays' module)."""
    x, logdet, trace = kernel_forward(band, L, offsets, eps, check)
    log_q, kl = combine(logdet, trace, mu, eps)
    q_shape = np.broadcast_shapes(x.shape[:-1], kl.shape)  # shapes only: no array is made
    if log_q.shape != q_shape:  # mu's batch wider than L's and eps's: z's is
        log_q = xp.ascontiguousarray(xp.broadcast_to(log_q, q_shape))
    return x, xp.asarray(log_q), xp.asarray(kl)


def cotangents(batch, mu, glq=None, gkl=None):
    """(det, half_trace, gmu) for the cotangents of log_q and kl (either None: zero): the weights of d log
    det L and d tr Sigma, summed to L's batch ``batch``, and mu's gradient of the KL's shape + (n,) (None
    without gkl). det is None when both cotangents are."""
    det = None if glq is None else unbroadcast(glq, batch)
    if gkl is None:
        return det, None, None
    g = unbroadcast(gkl, batch)
    return (g if det is None else det + g), 0.5 * g, gkl[..., None] * mu


def kernel_backward(band, xp, L, offsets, x, gx=None, det=None, half_trace=None):
    """(gL, L^-1 gx) of the head for x's cotangent gx and the weights of :func:`cotangents` (each None:
    zero): gL of L's shape; L^-1 gx is eps's gradient through x, of x's shape (zeros without gx)."""
    batch = L.shape[:-2]
    gL = geps = None
    if gx is not None:                            # x = L^-T eps (gvae.rules.band.solve_t_vjp)
        geps = band.band_solve(L, offsets, gx, check=False)
        gL = band.band_outer(x, geps, offsets, batch, -1.0)
    if half_trace is not None:
        gt = band.band_trace_inv_grad(L, offsets, half_trace, check=False)
        gL = gt if gL is None else gL + gt
    if det is not None:
        gd = band.band_logdet_grad(L, det, check=False)
        gL = gd if gL is None else gL + gd
    return (xp.zeros(L.shape, L.dtype) if gL is None else gL), (xp.zeros(x.shape, L.dtype) if geps is None else geps)


def backward(band, xp, L, offsets, mu, x, gx=None, glq=None, gkl=None):
    """(gL, gmu, geps) for the cotangents (gx, glq, gkl) of :func:`forward`'s outputs, any of them None
    (zero): gL of L's shape; gmu of the KL's shape + (n,); geps = L^-1 gx of x's shape, eps's gradient
    through x (through log q it is -glq eps, an elementwise product the caller adds). The caller reduces
    gmu and geps to its arguments' shapes."""
    batch = L.shape[:-2]
    det, half_trace, gmu = cotangents(batch, mu, glq, gkl)
    if gmu is None:
        gmu = xp.zeros(np.broadcast_shapes(batch, mu.shape[:-1]) + (L.shape[-1],), L.dtype)
    gL, geps = kernel_backward(band, xp, L, offsets, x, gx, det, half_trace)
    return gL, gmu, geps

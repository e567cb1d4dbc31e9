"""The banded-factor kernels of docs/reference/api.md section 2 as PyTorch functions, each calling one operator of
the ``gvae::`` namespace.

The operators are built in parts: :mod:`gvae.torch.library` defines them (schema, CPU and CUDA kernels,
fake implementations for ``torch.compile`` and ``torch.export``), on tensors handed to the kernels by
:mod:`gvae.torch.bridge` (NumPy views of CPU tensors, CuPy views of CUDA ones, no copy);
:mod:`gvae.torch.autograd` gives each an ``autograd.Function`` and picks the road of every call;
:mod:`gvae.torch.derivatives` holds their reverse-mode and forward-mode rules and :mod:`gvae.torch.vmap`
their vmap rules. The functions here take reverse mode, forward mode (``torch.autograd.forward_ad``) and
the ``torch.func`` transforms, ``torch.compile`` and ``vmap``; ``band_diag_inv`` alone refuses forward
mode, and ``band_trace_inv`` and ``band_diag_inv`` are differentiable once."""
from . import derivatives, vmap  # noqa: F401  (registering the operators' derivatives and vmap rules)
from .autograd import _call

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_head"]


def band_solve_t(L, offsets, b, *, check=True):
    """x with L^T x = b; L (*batch, K, n), b (*lead, n) broadcasting with batch; float32 or float64."""
    return _call("band_solve_t", L, offsets, b, check)


def band_solve(L, offsets, b, *, check=True):
    """x with L x = b (shapes as :func:`band_solve_t`)."""
    return _call("band_solve", L, offsets, b, check)


def band_matvec_t(L, offsets, x, *, check=True):
    """L^T x (shapes as :func:`band_solve_t`)."""
    return _call("band_matvec_t", L, offsets, x, check)


def band_matvec(L, offsets, x, *, check=True):
    """L x (shapes as :func:`band_solve_t`)."""
    return _call("band_matvec", L, offsets, x, check)


def band_logdet(L, *, check=True):
    """log det L = sum_i log L[..., 0, i], shape ``L.shape[:-2]``."""
    return _call("band_logdet", L, check)


def band_trace_inv(L, offsets, *, check=True):
    """tr((L L^T)^-1), exact, shape ``L.shape[:-2]``."""
    return _call("band_trace_inv", L, offsets, check)


def band_diag_inv(L, offsets, *, check=True):
    """diag((L L^T)^-1), exact, shape ``L.shape[:-2] + (n,)``."""
    return _call("band_diag_inv", L, offsets, check)


def band_head(L, offsets, mu, eps, *, check=True):
    """A VAE step's three uses of q = N(mu, (L L^T)^-1) in one operator and one backward:
    ``(z, log_q, kl)`` with z = mu + L^-T eps (the reparameterised sample, of eps's shape broadcast with
    L's batch), log_q = log q(z) (that shape without n) and kl = KL(q || N(0, I)) (L's batch broadcast
    with mu's). The same values and derivatives as ``mu + band_solve_t(L, offsets, eps)``, the log-density
    at it and the closed-form KL (log q from eps, which L^T (z - mu) equals). L (*batch, K, n); mu (*batch,
    n); eps (*S, *batch, n); float32 or float64."""
    x, log_q, kl = _call("band_head", L, offsets, mu, eps, check)
    return mu + x, log_q, kl

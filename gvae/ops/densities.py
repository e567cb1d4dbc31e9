"""Fused log-densities and KL terms (the differentiable twins of gvae.kernels.densities)."""
from .. import kernels
from ..autodiff import defvjp_joint, primitive

__all__ = ["bernoulli_loglik", "diag_normal_kl"]


@primitive
def bernoulli_loglik(logits, x):
    """sum_j x_j l_j - softplus(l_j) over the last axis; logits (*S, *B, N), x (*B, N) -> (*S, *B)."""
    return kernels.bernoulli_loglik(logits, x)[0]


def _bernoulli_vjp(dl, argnums, logits, x):
    if 1 in argnums:
        raise ValueError("bernoulli_loglik: no gradient with respect to the observations x")
    return lambda g: (g[..., None] * dl, None)


defvjp_joint(bernoulli_loglik, _bernoulli_vjp,
             forward=lambda logits, x: kernels.bernoulli_loglik(logits, x, want_grad=True))


@primitive
def diag_normal_kl(mu, sigma):
    """KL(N(mu, diag sigma^2) || N(0, I)) over the last axis; mu, sigma (*B, D) -> (*B,)."""
    return kernels.diag_normal_kl(mu, sigma)[0]


def _kl_vjp(grads, argnums, mu, sigma):
    dmu, dsigma = grads
    return lambda g: (g[..., None] * dmu, g[..., None] * dsigma)


defvjp_joint(diag_normal_kl, _kl_vjp, forward=lambda mu, sigma: kernels.diag_normal_kl(mu, sigma, want_grad=True))

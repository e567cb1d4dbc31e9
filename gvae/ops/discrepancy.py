"""The maximum mean discrepancy as a differentiable op (the twin of :func:`gvae.kernels.mmd`)."""
from .. import kernels
from ..autodiff import defvjp_joint, primitive

__all__ = ["mmd"]


@primitive
def mmd(z, y, kernel="imq", scale=None):
    """MMD^2 (V-statistic) of the samples z (B, d) and y (M, d), a 0-d array; see :func:`gvae.kernels.mmd`.
    Differentiable in z only: y is the reference sample (draws of the prior)."""
    return kernels.mmd(z, y, kernel, scale)[0]


def _mmd_vjp(dz, argnums, z, y, kernel="imq", scale=None):
    if 1 in argnums:
        raise ValueError("mmd: no gradient with respect to the reference sample y")
    return lambda g: (kernels.binary("multiply", g, dz), None)


defvjp_joint(mmd, _mmd_vjp, forward=lambda z, y, kernel="imq", scale=None: kernels.mmd(z, y, kernel, scale, True))

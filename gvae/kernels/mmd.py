"""The maximum mean discrepancy between two samples (InfoVAE, Zhao et al.), fused with its gradient."""
from . import mmd_cpu  # noqa: F401  (registers the CPU kernel)
from .arithmetic import contiguous
from .backend import array_module, implementation
from .checks import float_array, same_dtype

MMD_KERNELS = ("imq", "rbf")


def mmd(z, y, kernel="imq", scale=None, want_grad=False):
    """MMD^2 between the samples z (B, d) and y (M, d), d >= 1, the biased (V-statistic) estimate

        (1/B^2) sum_ij k(z_i, z_j) + (1/M^2) sum_ij k(y_i, y_j) - (2/(B M)) sum_ij k(z_i, y_j),

    with k(a, b) = C / (C + |a - b|^2) ("imq", inverse multiquadratic) or exp(-|a - b|^2 / C) ("rbf"),
    C = ``scale`` (default 2 d, as Tolstikhin et al. and Zhao et al. take for N(0, I) priors).
    Accumulated in float64. Returns ``(value, dvalue/dz of shape (B, d) or None)``, the value a 0-d
    array of z's dtype on z's device."""
    float_array("mmd z", z, 2)
    float_array("mmd y", y, 2)
    same_dtype("mmd", z, y)
    if z.ndim != 2 or y.ndim != 2:
        raise ValueError(f"mmd: z and y must be 2-D (samples, d), got shapes {z.shape} and {y.shape}")
    if kernel not in MMD_KERNELS:
        raise ValueError(f"mmd: kernel must be one of {', '.join(MMD_KERNELS)}, got {kernel!r}")
    B, d = z.shape
    if y.shape[1] != d or B == 0 or y.shape[0] == 0:
        raise ValueError(f"mmd: z (B, d) and y (M, d) need one d and B, M >= 1, got {z.shape} and {y.shape}")
    if d == 0:  # checked before the scale, whose default 2 d would be 0 and blamed instead
        raise ValueError(f"mmd: z and y have latent dimension d = 0 (shapes {z.shape} and {y.shape}): samples "
                         "with no coordinates have no discrepancy; expected d >= 1")
    C = 2.0 * d if scale is None else float(scale)
    if not C > 0 or C == float("inf"):
        raise ValueError(f"mmd: scale must be a positive finite number, got {scale!r}")
    xp = array_module(z, y)
    z, y = contiguous(z), contiguous(y)
    grad = xp.empty_like(z) if want_grad else xp.empty((0, d), z.dtype)
    value = implementation("mmd", z, y)(z, y, kernel == "rbf", C, grad)
    return value.astype(z.dtype, copy=False), (grad if want_grad else None)

"""gvae from JAX (docs/reference/api.md, "From JAX"): the banded-factor kernels as ``jax.custom_vjp`` functions
(:mod:`gvae.jax.ops`) and :class:`BandedPrecisionNormal`, a pytree Gaussian with a banded precision
factor (sampling, scoring, entropy, variances and closed-form KLs). Needs JAX (``pip install gvae[jax]``);
importing :mod:`gvae` alone does not import it, and importing this changes no JAX configuration."""
from .distribution import BandedPrecisionNormal
from .ops import (band_diag_inv, band_head, band_logdet, band_matvec, band_matvec_t, band_solve, band_solve_t,
                  band_trace_inv)

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_head", "BandedPrecisionNormal"]

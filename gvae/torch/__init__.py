"""gvae from PyTorch (docs/reference/api.md, "From PyTorch"): the banded-factor kernels as differentiable ``gvae::``
operators (:mod:`gvae.torch.ops`) and :class:`BandedPrecisionNormal`, a ``torch.distributions``
distribution with a banded precision factor whose KL against ``Normal`` and ``Independent(Normal)``
is registered with ``torch.distributions.kl_divergence``. Needs PyTorch (``pip install gvae[torch]``);
importing :mod:`gvae` alone does not import it."""
from .distribution import BandedPrecisionNormal
from .ops import (band_diag_inv, band_head, band_logdet, band_matvec, band_matvec_t, band_solve, band_solve_t,
                  band_trace_inv)

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_head", "BandedPrecisionNormal"]

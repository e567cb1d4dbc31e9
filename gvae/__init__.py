"""gvae: variational autoencoders with structured Gaussian posteriors, on NumPy and Numba.

The layers, bottom up: :mod:`gvae.kernels` (raw array kernels) <- :mod:`gvae.ops` (differentiable
primitives) <- model pieces (:mod:`gvae.layers`, :mod:`gvae.posteriors`, :mod:`gvae.likelihoods`,
:mod:`gvae.objectives`, :mod:`gvae.model`) <- :mod:`gvae.train` and :mod:`gvae.evaluate` <- the CLI.
"""
import os

__version__ = "0.1.0"

# Numba's OpenMP threads (the band kernels go parallel on large batches) otherwise spin after each
# parallel region and fight OpenBLAS's spinning threads for the cores: on a 2-core machine a 60 us
# call was seen to take a scheduler tick (8 ms). Sleeping waiters cost ~0.1 ms instead. Set before
# Numba starts its thread pool; a value the user chose is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import kernels, ops, posteriors  # noqa: E402
from .autodiff import grad, value_and_grad  # noqa: E402

__all__ = ["kernels", "ops", "posteriors", "value_and_grad", "grad", "__version__"]

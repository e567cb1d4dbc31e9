"""gvae: variational autoencoders with structured Gaussian posteriors, on NumPy and Numba.

The layers, bottom up: :mod:`gvae.kernels` (raw array kernels) <- :mod:`gvae.ops` (differentiable
primitives) <- model pieces (:mod:`gvae.layers`, :mod:`gvae.posteriors`, :mod:`gvae.likelihoods`,
:mod:`gvae.objectives`, :mod:`gvae.model`) <- :mod:`gvae.train` and :mod:`gvae.evaluate` <- the CLI.
"""
__version__ = "0.1.0"

from . import kernels, ops, posteriors  # noqa: E402
from .autodiff import grad, value_and_grad  # noqa: E402

__all__ = ["kernels", "ops", "posteriors", "value_and_grad", "grad", "__version__"]

"""gvae: variational autoencoders with structured Gaussian posteriors, on NumPy and Numba or CuPy and CUDA.

The layers, bottom up, each importing only from those below it:
:mod:`gvae.kernels` (raw array kernels, Numba on CPU and CUDA on GPU, chosen from the arrays' type) <-
:mod:`gvae.autodiff` and :mod:`gvae.ops` (differentiable primitives) <- :mod:`gvae.model` (networks,
posteriors, likelihoods, objectives, the VAE) <- :mod:`gvae.training` (trainer, run folders,
evaluation) <- :mod:`gvae.cli` and :mod:`gvae.plots`; :mod:`gvae.io` (files, data sets, images) stands
apart. The public contract is ``docs/api.md`` in the repository.

Importing gvae changes nothing outside it: no environment variable is set (see the README on
``OMP_WAIT_POLICY``).
"""
__version__ = "0.1.0"

from . import kernels, ops  # noqa: E402
from .autodiff import grad, value_and_grad  # noqa: E402
from .model import posteriors  # noqa: E402

__all__ = ["kernels", "ops", "posteriors", "value_and_grad", "grad", "__version__"]

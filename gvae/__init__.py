"""gvae: variational autoencoders with structured Gaussian posteriors, on NumPy and Numba.

The layers, bottom up, each importing only from those below it:
:mod:`gvae.kernels` (raw array kernels, Numba on CPU and CUDA on GPU, chosen from the arrays' type; the
CPU runtime under them in :mod:`gvae.kernels.cpu`) <- :mod:`gvae.rules` (the band and Gaussian formulas,
written once for any array namespace) <- :mod:`gvae.autodiff` and :mod:`gvae.ops` (differentiable
primitives) <- :mod:`gvae.model` (networks, posteriors, likelihoods, objectives, the VAE) <-
:mod:`gvae.training` (the loop, its tasks, run folders) and :mod:`gvae.evaluation` (bounds, gaps,
analysis, trained models' numbers) <- :mod:`gvae.plots` <- the front ends :mod:`gvae.torch` and
:mod:`gvae.jax` <- :mod:`gvae.sweep` <- :mod:`gvae.cli`; :mod:`gvae.io` (files, data sets, images)
stands apart. The public contract is ``docs/reference/api.md`` in the repository.

Importing gvae changes nothing outside it (no environment variable is set), and loads its parts when
they are first used, so that the command line can set thread counts before NumPy starts its BLAS.
"""
import importlib

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself)
_LAZY = {"kernels": ("gvae.kernels", None), "ops": ("gvae.ops", None), "posteriors": ("gvae.posteriors", None),
         "value_and_grad": ("gvae.autodiff", "value_and_grad"), "grad": ("gvae.autodiff", "grad"),
         "load": ("gvae.evaluation.trained", "load")}

__all__ = ["kernels", "ops", "posteriors", "value_and_grad", "grad", "load", "__version__"]


def __getattr__(name):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'gvae' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

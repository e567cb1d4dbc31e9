"""Array-in, array-out kernels (no autodiff). NumPy arrays run on Numba, CuPy arrays on CUDA.

Each public function validates its arguments, brings them to the layout its kernels expect, and calls
the implementation that :mod:`gvae.kernels.backend` picks from the arrays' type.
"""
from .backend import array_module, device_of
from .dense import bias_activation, bias_activation_grad, ACTIVATIONS
from .densities import bernoulli_loglik, diag_normal_kl
from .optim import adam_update, sum_squares
from .importance import log_mean_exp
from .band import *  # noqa: F401,F403
from .band import __all__ as _band

__all__ = ["array_module", "device_of", "bias_activation", "bias_activation_grad", "ACTIVATIONS",
           "bernoulli_loglik", "diag_normal_kl", "adam_update", "sum_squares", "log_mean_exp"]
__all__ += _band

"""Array-in, array-out kernels (no autodiff). NumPy arrays run on Numba, CuPy arrays on CUDA.

Each public function validates its arguments, brings them to the layout its kernels expect, and calls
the implementation that :mod:`gvae.kernels.backend` picks from the arrays' type. Per algorithm, the
front file ``NAME.py`` sits beside its Numba kernel ``NAME_cpu.py``, its CUDA source ``NAME.cu`` and
the thin ``NAME_cuda.py`` that launches it; the banded-factor kernels have a folder of their own.
"""
from .activation import bias_activation, bias_activation_grad
from .activations import ACTIVATIONS
from .adam import adam_update, sum_squares
from .backend import array_module, device_of
from .band import *  # noqa: F401,F403
from .band import __all__ as _band
from .bernoulli import bernoulli_loglik
from .gauss_kl import diag_normal_kl
from .logmeanexp import log_mean_exp

__all__ = ["array_module", "device_of", "bias_activation", "bias_activation_grad", "ACTIVATIONS",
           "bernoulli_loglik", "diag_normal_kl", "adam_update", "sum_squares", "log_mean_exp"]
__all__ += _band

"""Array-in, array-out kernels (no autodiff). NumPy arrays run on Numba, CuPy arrays on CUDA.

The device is recognised from the arrays in :mod:`gvae.kernels.backend`, which also gives the layers
above the array module of their arrays and the copies between host and device. Each public function
validates its arguments, brings them to the layout its kernels expect, and calls
the implementation that :mod:`gvae.kernels.backend` picks from the arrays' type. Per algorithm, the
front file ``NAME.py`` sits beside its Numba kernel ``NAME_cpu.py``, its CUDA source ``NAME.cu`` and
the thin ``NAME_cuda.py`` that launches it; the banded-factor kernels have a folder of their own. Under the
Numba kernels lies their CPU runtime, :mod:`gvae.kernels.cpu` (gvae's threads and the C entries its
workers call, the Numba decorator and its cache, BLAS control, per-machine tuning), which imports nothing
of gvae above it; under the CUDA kernels, theirs, :mod:`gvae.kernels.cuda` (sources built into CuPy
modules, gvae's cuBLAS handle, streams, graphs). :mod:`gvae.kernels.capture` records a stretch of kernel
work and replays it on either.

The layers above use this package's face alone, never a runtime's modules: the kernels, the devices
(:mod:`gvae.kernels.backend`), the capture, gvae's threads (``set_threads``, ``get_threads``,
``available_cores``, ``cores_unless_set``) and the blocks a pass is cut into for them (``blocks``,
``over_blocks``), this machine's kept plans (``tuning_active``, ``plan_file``, ``plans_folder``,
``kept_plans``, ``clear_plans``), and the compilation cache's state (``compiling_seconds``,
``report_compilations``).
"""
from .activation import activation, activation_grad, bias_activation, bias_activation_grad
from .activations import ACTIVATIONS
from .arithmetic import binary, broadcast_to, contiguous, copy_into, sum_axes, unary
from .adam import adam_constants, adam_update, adam_update_guarded, average_update, sum_squares, sum_squares_array
from .backend import (array_module, device_module, device_names, device_of, generator, on_host, register_device,
                      to_device, to_host)
from .band import *  # noqa: F401,F403
from .band import __all__ as _band
from .ar_bernoulli import ar_bernoulli_draw
from .bernoulli import bernoulli_loglik
from .capture import capture, has_capture
from .categorical import categorical_grad, categorical_log_prob
from .gauss_kl import diag_normal_kl
from .logmeanexp import log_mean_exp
from .matmul import matmul, matmuls
from .mmd import MMD_KERNELS, mmd
from .cpu.jit import compiling_seconds, report_compilations
from .cpu.threads import available_cores, blocks, cores_unless_set, get_threads, over_blocks, set_threads
from .cpu.tuning import (active as tuning_active, clear as clear_plans, folder as plans_folder, plan_file,
                         plans as kept_plans)

__all__ = ["array_module", "device_of", "device_module", "device_names", "to_device", "to_host", "register_device", "generator",
           "on_host",
           "activation", "activation_grad", "bias_activation", "bias_activation_grad", "ACTIVATIONS",
           "binary", "broadcast_to", "contiguous", "copy_into", "sum_axes", "unary",
           "ar_bernoulli_draw", "bernoulli_loglik", "categorical_log_prob", "categorical_grad", "diag_normal_kl",
           "mmd", "MMD_KERNELS", "adam_update", "adam_update_guarded", "adam_constants",
           "average_update", "sum_squares", "sum_squares_array", "log_mean_exp",
           "matmul", "matmuls", "capture", "has_capture",
           "set_threads", "get_threads", "available_cores", "cores_unless_set", "blocks", "over_blocks",
           "tuning_active", "clear_plans", "plans_folder", "plan_file", "kept_plans",
           "compiling_seconds", "report_compilations"]
__all__ += _band

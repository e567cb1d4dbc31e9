"""asv benchmarks for gvae: the Numba kernels of the VAE step (bench_kernels), the banded-factor kernels
and their differentiable ops (bench_band), the training step per posterior family and objective
(bench_training) and evaluation throughput and memory (bench_evaluate).

Every class builds its data in ``setup`` and calls what it times once there, so Numba compilation is
never timed. The BLAS's thread count is the environment's (``OPENBLAS_NUM_THREADS``; unset: one thread
per core); gvae's own threads stay at their default.
"""
import numba

# asv imports this package once in its fork server and runs every benchmark in a fork of it. Numba's
# first compilation or cache load in a process fills its typing and target registries (0.7 s here,
# mostly imports); doing it once, on a trivial serial function, saves that in every benchmark process.
numba.njit(lambda x: x + 1)(1)

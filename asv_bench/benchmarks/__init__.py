"""asv benchmarks for gvae: the Numba kernels of the VAE step (bench_kernels), the banded-factor kernels
and their differentiable ops (bench_band), the training step per posterior family and objective
(bench_training) and evaluation throughput and memory (bench_evaluate).

Every class builds its data in ``setup`` and calls what it times once there, so Numba compilation is
never timed. Thread counts are the environment's (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``NUMBA_NUM_THREADS``; unset: one thread per core).
"""
import os

# As the command line does (gvae/cli.py) and before any OpenMP runtime starts: idle OpenMP threads of
# Numba's parallel kernels sleep instead of spinning against OpenBLAS's threads for the cores, so the
# suite times what `gvae train` and `gvae eval` run. A value already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

# asv imports this package once in its fork server and runs every benchmark in a fork of it. Numba's
# first compilation or cache load in a process fills its typing and target registries (0.7 s here,
# mostly imports); doing it once, on a trivial serial function, saves that in every benchmark process.
# No parallel kernel runs here: Numba's OpenMP thread pool must not start before the forks.
numba.njit(lambda x: x + 1)(1)

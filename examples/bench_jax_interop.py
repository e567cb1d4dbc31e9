"""Per-call overhead of gvae.jax on a tiny input: ``band_matvec`` on a 2 x 8 factor, eagerly and under
``jit``, against calling :mod:`gvae.kernels` directly on NumPy arrays. Prints microseconds per call
(the median of repeats); timings belong here, not in the tests.

    python examples/bench_jax_interop.py
"""
import timeit

import jax
import numpy as np

import gvae.jax as gj
from gvae import kernels


def per_call_us(f, number=2000, repeat=7):
    f()  # compile (Numba and XLA) outside the timing
    return 1e6 * float(np.median(timeit.repeat(f, number=number, repeat=repeat))) / number


def main():
    offsets, n = (0, 1), 8
    L = np.ones((2, n), np.float32)
    x = np.arange(n, dtype=np.float32)
    Lj, xj = jax.numpy.asarray(L), jax.numpy.asarray(x)
    jitted = jax.jit(lambda L, x: gj.band_matvec(L, offsets, x))
    rows = [("gvae.kernels.band_matvec (NumPy)", lambda: kernels.band_matvec(L, offsets, x)),
            ("gvae.jax.band_matvec, eager", lambda: gj.band_matvec(Lj, offsets, xj).block_until_ready()),
            ("gvae.jax.band_matvec, jit", lambda: jitted(Lj, xj).block_until_ready())]
    for label, f in rows:
        print(f"{label:36s} {per_call_us(f):8.1f} us")


if __name__ == "__main__":
    main()

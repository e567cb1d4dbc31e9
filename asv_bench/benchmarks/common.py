"""What every benchmark class of the suite shares."""
import numpy as np

N_IN = 784
# Grey levels of mean 0.13, MNIST's mean intensity, binarised with those probabilities. Denser images
# (mean 0.5) start the chain, grid and extgrid families at d = 64 with KL terms of 1e16 and more and
# non-finite steps; at MNIST's density every family trains from the first step.
MEAN_INTENSITY = 0.13


class Benchmark:
    """Base of every benchmark class.

    ``timeout`` covers ``setup``, where the first run after a kernel's source changed compiles it
    (Numba then caches it on disk for the later processes): minutes on a busy 2-core machine, beyond
    asv's default of 60 s."""

    timeout = 600


def binary_batches(batch, count):
    """(data, batches): generated grey images of MNIST's mean intensity as a Trainer's splits ({"train":
    (x (batch * count, 784), labels), "valid" and "test" one batch each}), and ``count`` batches (batch, 784)
    of them binarised once: float32, seeded."""
    rng = np.random.default_rng(0)
    n = batch * count
    x = rng.random((n, N_IN), dtype=np.float32) * np.float32(2 * MEAN_INTENSITY)
    y = np.zeros(n, dtype=np.int64)
    data = {"train": (x, y), "valid": (x[:batch], y[:batch]), "test": (x[:batch], y[:batch])}
    binary = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
    return data, [np.ascontiguousarray(binary[i * batch:(i + 1) * batch]) for i in range(count)]

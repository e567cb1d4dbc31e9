"""The data as the training loop and the evaluations take it: raw images in [0, 1] made into the
observations a likelihood models, an epoch's shuffled batches of them, and the validation and test sets
made observations once, with EVAL_SEED, the same for every run (:func:`fixed_eval_sets`).

The likelihood says what it models (``Likelihood.continuous``: dequantised intensities squashed into
(lambda, 1 - lambda), lambda its ``squash``; otherwise binary pixels); this module makes the observations,
on the data's device with a generator of that device (numpy.random.default_rng, cupy.random.default_rng,
...), so noise is made where it is used. NumPy appears below only for dtypes, which every device shares.
"""
import numpy as np

from ..kernels import array_module

# Validation and test sets are binarised once with this seed, so numbers compare across runs.
EVAL_SEED = 20140101
# The training images of the static protocol (--binarization static) are binarised once with this one.
STATIC_SEED = 20080705


def _float_dtype(x):
    """float64 for float64 data, float32 otherwise: the dtype observations are made in."""
    return np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)


def binarize(x, rng):
    """Stochastic binarisation: each pixel is 1 with probability ``x``.

    ``x``: float array in ``[0, 1]`` on any device; ``rng``: a generator of that device.
    Returns an array of ``x.shape`` and dtype (float32 unless x is float64) with values in {0, 1}."""
    return (rng.random(x.shape, dtype=np.float32) < x).astype(_float_dtype(x))


def static_binarization(x):
    """The training images of the static protocol: ``x`` (N, n) in [0, 1] binarised once with STATIC_SEED
    on the host, the same for every run (and its first N rows the same whatever N: a run with --limit N
    trains on the first N of the full set's draws); x's dtype. Binary images stay as they are under the
    epochs' binarisation, so a run trains on this one draw throughout."""
    x = np.asarray(x)
    return binarize(x, np.random.default_rng(STATIC_SEED)).astype(x.dtype)


def dequantize(x, rng, squash=1e-6):
    """Uniform dequantisation of 8-bit intensities, squashed away from 0 and 1.

    ``x`` in [0, 1] holds k / 256 (MNIST's pickle) or k / 255 (scaled uint8); both give back the
    integer k = min(floor(256 x), 255). Returns lambda + (1 - 2 lambda) (k + u) / 256 with
    u ~ U(0, 1), lambda = ``squash``: values in (lambda, 1 - lambda), x's float dtype (float32 default)."""
    xp = array_module(x)
    k = xp.minimum(xp.floor(x.astype(np.float64) * 256), 255)
    v = (k + rng.random(x.shape)) / 256
    return (squash + (1 - 2 * squash) * v).astype(_float_dtype(x))


def observations(x, likelihood, rng):
    """Raw data x (N, n) in [0, 1] -> what ``likelihood`` models, drawn from ``rng``: dequantised
    (:func:`dequantize` with its ``squash``) for a continuous likelihood, binarised (:func:`binarize`)
    otherwise; (N, n), x's float dtype, on x's device."""
    return dequantize(x, rng, likelihood.squash) if likelihood.continuous else binarize(x, rng)


def batches(n, batch_size, rng):
    """Yield index arrays of length ``batch_size`` (the last may be shorter) that together cover
    ``0..n-1`` once, in random order, on ``rng``'s device: the order is the argsort of n uniform draws,
    which every device's generator makes."""
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    order = rng.random(n).argsort()
    return (order[i:i + batch_size] for i in range(0, n, batch_size))


def epoch_batches(x, likelihood, batch_size, rng):
    """An epoch's training batches from the raw images x (N, n): all of x made observations afresh
    (:func:`observations`), then taken in the shuffled batches of :func:`batches` (B, n) each. Both draw
    from ``rng`` here, in that order, before the first batch is taken, so the steps' own draws come after."""
    obs = observations(x, likelihood, rng)
    return (obs[idx] for idx in batches(len(obs), batch_size, rng))


def fixed_eval_sets(data, model):
    """The validation and test sets prepared once (binarised or dequantised) with EVAL_SEED, on the host:
    the same observations for every run, every evaluation and every device (move them with to_device).
    ``data``: {split: (x, ...)}, the images x (N, n) in [0, 1]; returns (valid, test), the model's dtype."""
    rng = np.random.default_rng(EVAL_SEED)
    return tuple(observations(np.asarray(data[split][0], model.dtype), model.likelihood, rng)
                 for split in ("valid", "test"))

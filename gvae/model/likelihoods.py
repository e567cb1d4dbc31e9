"""Observation models p(x|z) from the decoder's output.

A likelihood is made for n observed units (``Likelihood(n, ...)``), then says how wide the decoder's
output is (``output_size``), which parameters of its own it keeps (``param_shapes``, named ``lik.*``),
what raw data it accepts (``check``: intensities in [0, 1]), which observations it models
(``continuous``: uniformly dequantised 8-bit intensities squashed into (lambda, 1 - lambda), lambda its
``squash``, or else binary pixels; :mod:`gvae.training.batching` makes them from the raw data), and gives
log p(x|z) summed over the units (``log_prob(out, x, params)``: out (S, B, width), x (B, n) -> (S, B)),
the decoder's mean (``mean``) and samples (``sample``).

Continuous likelihoods model x = lambda + (1 - 2 lambda) (k + u) / 256 for 8-bit intensities k and
u ~ U(0, 1)^n; ``nats_offset()`` = n log(1 - 2 lambda) - n log 256 turns their log-densities of x into
(lower bounds on) log-probabilities of the 8-bit data in nats, comparable across likelihoods.
"""
import math
from abc import ABC, abstractmethod

import numpy as np

from .. import kernels, ops
from ..kernels import array_module
from .constants import DeviceConstant
from .gaussian import LOG_2PI, band_factor, band_log_density, band_sample, positive, positive_inverse
from .lattice import extgrid_offsets, grid_offsets, lattice_mask

# Random draws come from ``rng``, a generator of the data's own array module (numpy.random.default_rng,
# cupy.random.default_rng, ...), so noise is made on the device that uses it.

# Pixel means are clipped to [MARGINAL_CLIP, 1 - MARGINAL_CLIP] before their logits start the decoder.
MARGINAL_CLIP = 1e-3


def _check_float_range(name, x, lo, hi):
    if getattr(getattr(x, "dtype", None), "kind", None) != "f":
        raise TypeError(f"{name} likelihood: expected a float array, got {getattr(x, 'dtype', type(x).__name__)}")
    xmin, xmax = float(x.min()), float(x.max())
    if not (lo <= xmin and xmax <= hi):
        raise ValueError(f"{name} likelihood: data must lie in [{lo:g}, {hi:g}], got values in [{xmin:g}, {xmax:g}]")


class Likelihood(ABC):
    """An observation model p(x|z) over ``n`` observed units, complete once constructed: its output size,
    parameters and any structure over the units (a pixel lattice) are fixed by ``n`` and its options."""
    name = ""
    continuous = False  # whether it models dequantised intensities (with a margin ``squash``), not binary pixels

    def __init__(self, n):
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"{self.name} likelihood: needs at least one observed unit, got {n}")
        self.n = int(n)

    @abstractmethod
    def log_prob(self, out, x, params):
        """log p(x|z) summed over the units: decoder output out (S, B, width), x (B, n) -> (S, B)."""

    @abstractmethod
    def mean(self, out, params):
        """The decoder's mean (or median) of x, (..., n)."""

    @abstractmethod
    def sample(self, out, params, rng):
        """A sample of x for each decoder output, (..., n)."""

    def output_size(self):
        return self.n

    def param_shapes(self):
        return {}

    def init(self, rng, params):
        """Fill this likelihood's own parameters in ``params`` (in place; the host arrays of a new model,
        ``rng`` a NumPy generator)."""

    def output_bias(self, x):
        """The decoder's last bias (output_size,) with which an untrained decoder, whose other outputs are
        near zero, predicts the marginal of the training data ``x`` (N, n) in [0, 1]; None
        where this model defines none (then the bias stays as the initialisation scheme drew it)."""
        return None

    def check(self, x):
        """Raise unless the raw data ``x`` are floats in [0, 1] this likelihood can model."""
        _check_float_range(self.name, x, 0.0, 1.0)

    def nats_offset(self):
        return 0.0


def bernoulli_draw(logits, u):
    """Binary draws [u < sigmoid(logits)] in logits' dtype, for uniforms u on [0, 1) (broadcast against the
    logits): the one way gvae turns uniforms into Bernoulli samples, outside any tape (a Tracer's value)."""
    p = ops.sigmoid(ops.value_of(logits))
    # [u < p] as the step of p - u, kernels both (a recorded step holds them): a difference of two floats
    # has the sign of their exact difference, so the draws are the comparison's.
    return kernels.unary("heaviside", kernels.binary("subtract", p, u))


class Bernoulli(Likelihood):
    """p(x|z) = prod_j Bernoulli(x_j; sigmoid(l_j)) with decoder logits l; x in [0, 1]."""

    name = "bernoulli"

    def log_prob(self, out, x, params=None):
        return ops.bernoulli_loglik(out, x)

    def mean(self, out, params=None):
        return ops.sigmoid(out)

    def output_bias(self, x):
        """The logits of the mean pixel values, clipped to [MARGINAL_CLIP, 1 - MARGINAL_CLIP] (MNIST's
        border pixels are never on), in x's float dtype, on x's device."""
        m = x.mean(axis=0).clip(MARGINAL_CLIP, 1 - MARGINAL_CLIP)
        return array_module(x).log(m / (1 - m))

    def sample(self, out, params, rng):
        return bernoulli_draw(out, rng.random(out.shape))


class AutoregressiveBernoulli(Bernoulli):
    """DARN's visible layer (Gregor et al., "Deep AutoRegressive Networks", 2014): pixel j also reads the
    pixels before it in raster order,

        p(x|z) = prod_j Bernoulli(x_j; sigmoid(l_j + sum_{i<j} V_ji x_i)),

    with decoder logits l and the learned weights V = ``lik.ar`` (n, n; only its strictly lower triangle is
    read; zero at first, where this is :class:`Bernoulli`). log p(x|z) takes one masked product per image
    (x is observed), shared by every sample of z; drawing x is sequential, pixel by pixel
    (:func:`gvae.kernels.ar_bernoulli_draw`)."""

    name = "ar-bernoulli"

    def __init__(self, n):
        super().__init__(n)
        self.mask = DeviceConstant(np.tril(np.ones((self.n, self.n)), -1))

    def param_shapes(self):
        return {"lik.ar": (self.n, self.n)}

    def init(self, rng, params):
        params["lik.ar"][...] = 0.0

    def _weights(self, params):
        return ops.multiply(params["lik.ar"], self.mask.like(params["lik.ar"]))

    def _logits(self, out, x, params):
        """l + x (V o mask)^T: the decoder's logits (..., n) plus the term of the pixels x (..., n) that
        broadcast against them (one image's x for all its samples of z, or one path per logit row)."""
        rows = ops.matmul(ops.reshape(x, (-1, self.n)), ops.transpose(self._weights(params)))
        return out + ops.reshape(rows, x.shape)

    def log_prob(self, out, x, params):
        return ops.bernoulli_loglik(self._logits(out, x, params), x)

    def _draw(self, out, params, u):
        """The pixels drawn in order from uniforms u of out's shape."""
        logits = kernels.contiguous(ops.value_of(out))
        return kernels.ar_bernoulli_draw(logits, ops.value_of(params["lik.ar"]), kernels.contiguous(u))

    def mean(self, out, params):
        """The probabilities p(x_j = 1 | x_<j, z) along the most probable path drawn pixel by pixel (each
        pixel on where its probability exceeds 1/2): the picture of an autoregressive decoder's output,
        deterministic like a factorised one's mean."""
        half = array_module(ops.value_of(out)).full(out.shape, 0.5, dtype=out.dtype)
        return ops.sigmoid(self._logits(out, self._draw(out, params, half), params))

    def sample(self, out, params, rng):
        return self._draw(out, params, rng.random(out.shape, dtype=out.dtype))


class Continuous(Likelihood):
    """Base of the likelihoods of dequantised intensities in (lambda, 1 - lambda)."""

    continuous = True

    def __init__(self, n, squash=1e-6):
        super().__init__(n)
        if not 0 < squash < 0.5:
            raise ValueError(f"the squash margin lambda must lie in (0, 0.5), got {squash}")
        self.squash = squash

    def check(self, x):
        super().check(x)
        if bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"{self.name} likelihood: the data hold only 0 and 1 (binarized?); continuous "
                             "likelihoods need the 8-bit intensities scaled into [0, 1]")

    def nats_offset(self):
        return self.n * (math.log1p(-2 * self.squash) - math.log(256))


class Gaussian(Continuous):
    """p(x|z) = N(x; f(z), diag psi) (the VAE as non-linear factor analysis, as in Marlin's lectures).

    ``psi="global"``: psi = softplus(lik.psi) + floor, one learned variance per unit shared by all
    data; ``psi="decoder"``: the decoder outputs (mean, raw psi) per data point, psi = softplus + floor."""

    name = "gaussian"

    def __init__(self, n, psi="global", floor=1e-4, squash=1e-6):
        super().__init__(n, squash)
        if psi not in ("global", "decoder"):
            raise ValueError(f"psi must be 'global' or 'decoder', got {psi!r}")
        if not floor > 0:
            raise ValueError(f"the variance floor must be > 0, got {floor}")
        self.psi, self.floor = psi, floor

    def output_size(self):
        return self.n if self.psi == "global" else 2 * self.n

    def param_shapes(self):
        return {"lik.psi": (self.n,)} if self.psi == "global" else {}

    def init(self, rng, params):
        if self.psi == "global":
            params["lik.psi"][...] = positive_inverse(0.1, self.floor)  # variance 0.1 to start

    def _mean_var(self, out, params):
        raw = params["lik.psi"] if self.psi == "global" else out[..., self.n:]
        return out[..., :self.n], positive(raw, self.floor)

    def log_prob(self, out, x, params):
        mu, var = self._mean_var(out, params)
        r = x - mu
        return -0.5 * ops.sum(r * r / var + ops.log(var), axis=-1) - 0.5 * self.n * LOG_2PI

    def mean(self, out, params):
        return self._mean_var(out, params)[0]

    def sample(self, out, params, rng):
        mu, var = self._mean_var(out, params)
        return mu + ops.sqrt(var) * rng.standard_normal(mu.shape, dtype=mu.dtype)


class LogitNormal(Continuous):
    """Multivariate logit-normal (Malago & Peste, "Variational Autoencoders Endowed with Richer but Still Computationally
    Efficient Statistical Models"): logit(x) ~ N(mu, (L L^T)^-1), L banded over the pixel
    lattice, so log p(x|z) = log N(logit x; mu, P^-1) - sum_i log(x_i (1 - x_i)).

    ``stencil``: "diagonal" (offsets (0,)), "grid" (0, 1, c) or "extgrid" (0, 1, c-1, c, c+1) on the
    square image lattice, wrap-around links zeroed. ``factor="decoder"``: the decoder outputs mu and the
    K band rows of L per data point (output (1 + K) n); ``"global"``: the decoder outputs mu only and L
    is one learned band factor ``lik.L`` (K, n) shared by all data (far cheaper for large K)."""

    STENCILS = {"diagonal": 1, "grid": 2, "extgrid": 3}  # the smallest lattice side each needs

    def __init__(self, n, stencil="diagonal", factor="decoder", floor=1e-3, squash=1e-6):
        self.name = "logitnormal" if stencil == "diagonal" else f"logitnormal-{stencil}"  # first: errors name it
        super().__init__(n, squash)
        if stencil not in self.STENCILS:
            raise ValueError(f"stencil must be one of {sorted(self.STENCILS)}, got {stencil!r}")
        if factor not in ("decoder", "global"):
            raise ValueError(f"factor must be 'decoder' or 'global', got {factor!r}")
        if not floor > 0:
            raise ValueError(f"the floor on the factor's diagonal must be > 0, got {floor}")
        self.stencil, self.factor, self.floor = stencil, factor, floor
        side = math.isqrt(self.n)
        if side * side != self.n or side < self.STENCILS[self.stencil]:
            raise ValueError(f"{self.name} likelihood: images of {self.n} pixels do not fit a square lattice "
                             f"(need n = side^2 with side >= {self.STENCILS[self.stencil]})")
        stencils = {"diagonal": lambda: (0,), "grid": lambda: grid_offsets(side, side),
                    "extgrid": lambda: extgrid_offsets(side, side)}
        self.offsets = stencils[self.stencil]()
        self.off_mask = DeviceConstant(lattice_mask(self.offsets, side, side)[1:])

    def output_size(self):
        return self.n * (1 + len(self.offsets)) if self.factor == "decoder" else self.n

    def param_shapes(self):
        return {"lik.L": (len(self.offsets), self.n)} if self.factor == "global" else {}

    def init(self, rng, params):
        if self.factor == "global":
            params["lik.L"][...] = 0
            params["lik.L"][0] = positive_inverse(1.0, self.floor)  # L = I to start

    def _factor(self, out, params):
        n, k = self.n, len(self.offsets)
        raw = out[..., n:].reshape(out.shape[:-1] + (k, n)) if self.factor == "decoder" else params["lik.L"]
        return band_factor(raw, self.off_mask, self.floor)

    def log_prob(self, out, x, params):
        log_x, log_1mx = ops.log(x), ops.log1p(-x)
        y = log_x - log_1mx
        jacobian = -ops.sum(log_x + log_1mx, axis=-1)
        return band_log_density(self._factor(out, params), self.offsets, y, out[..., :self.n]) + jacobian

    def mean(self, out, params):
        """sigmoid(mu): the median of x (the logit-normal mean has no closed form)."""
        return ops.sigmoid(out[..., :self.n])

    def sample(self, out, params, rng):
        L = self._factor(out, params)
        mu = out[..., :self.n]
        # L's batch is mu's (a factor per decoder output) or none (one global factor): eps has mu's shape.
        eps = rng.standard_normal(mu.shape, dtype=mu.dtype)
        return ops.sigmoid(band_sample(L, self.offsets, mu, eps))


LIKELIHOODS = {"bernoulli": Bernoulli, "ar-bernoulli": AutoregressiveBernoulli, "gaussian": Gaussian,
               "logitnormal": lambda n, **kw: LogitNormal(n, "diagonal", **kw),
               "logitnormal-grid": lambda n, **kw: LogitNormal(n, "grid", **kw),
               "logitnormal-extgrid": lambda n, **kw: LogitNormal(n, "extgrid", **kw)}


def get_likelihood(name, n, **options):
    """The likelihood called ``name`` over ``n`` observed units, with its options (``psi``, ``factor``,
    ``squash``, ``floor``); a ValueError when it cannot model n units (a pixel lattice needs n = side^2)."""
    try:
        make = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}") from None
    return make(n, **options)

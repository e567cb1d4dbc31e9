"""Observation models p(x|z) from the decoder's output.

Each likelihood says how wide the decoder's output is (``output_size``), which parameters of its own
it keeps (``param_shapes``, e.g. a global noise variance; named ``lik.*``), what data it accepts
(``check``), and gives log p(x|z) summed over the pixels (``log_prob(out, x, params)``: out (S, B, w),
x (B, n) -> (S, B)), the mean of x (``mean``) and samples (``sample``)."""
import math

import numpy as np

from . import ops

LOG_2PI = math.log(2 * math.pi)


class Likelihood:
    name = ""

    def output_size(self, n):
        return n

    def param_shapes(self, n):
        return {}

    def init(self, rng, params):
        """Fill this likelihood's own parameters in ``params`` (in place)."""


def _check_float_range(name, x, lo, hi, closed):
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} likelihood: expected float data, got dtype {x.dtype}")
    xmin, xmax = float(np.min(x)), float(np.max(x))
    ok = (lo <= xmin and xmax <= hi) if closed else (lo < xmin and xmax < hi)
    if not ok or not math.isfinite(xmin + xmax):
        interval = f"[{lo}, {hi}]" if closed else f"({lo}, {hi})"
        raise ValueError(f"{name} likelihood: data must lie in {interval}, got values in [{xmin}, {xmax}]")


class Bernoulli(Likelihood):
    """p(x|z) = prod_j Bernoulli(x_j; sigmoid(l_j)) with decoder logits l; x in [0, 1]."""

    name = "bernoulli"

    def check(self, x):
        _check_float_range(self.name, x, 0.0, 1.0, closed=True)

    def log_prob(self, out, x, params=None):
        return ops.bernoulli_loglik(out, x)

    def mean(self, out, params=None):
        return ops.sigmoid(out)

    def sample(self, out, params, rng):
        p = self.mean(out)
        return (rng.random(p.shape) < p).astype(p.dtype)


class Gaussian(Likelihood):
    """p(x|z) = N(x; f(z), diag psi) (non-linear factor analysis, seed 004).

    ``psi="global"``: psi = softplus(lik.psi) + floor, one learned variance per pixel shared by all
    data; ``psi="decoder"``: the decoder outputs (mean, raw psi) per data point, psi = softplus + floor."""

    name = "gaussian"

    def __init__(self, psi="global", floor=1e-4):
        if psi not in ("global", "decoder"):
            raise ValueError(f"psi must be 'global' or 'decoder', got {psi!r}")
        if not floor > 0:
            raise ValueError(f"the variance floor must be > 0, got {floor}")
        self.psi, self.floor = psi, floor

    def output_size(self, n):
        return n if self.psi == "global" else 2 * n

    def param_shapes(self, n):
        return {"lik.psi": (n,)} if self.psi == "global" else {}

    def init(self, rng, params):
        if self.psi == "global":
            params["lik.psi"][...] = math.log(math.expm1(0.1))  # variance 0.1 to start

    def check(self, x):
        if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError(f"{self.name} likelihood: expected finite float data")

    def _mean_var(self, out, params):
        n = out.shape[-1] if self.psi == "global" else out.shape[-1] // 2
        raw = params["lik.psi"] if self.psi == "global" else out[..., n:]
        return out[..., :n], ops.softplus(raw) + np.asarray(self.floor, dtype=out.dtype)

    def log_prob(self, out, x, params):
        mu, var = self._mean_var(out, params)
        r = x - mu
        n = x.shape[-1]
        return -0.5 * ops.sum(r * r / var + ops.log(var), axis=-1) - 0.5 * n * LOG_2PI

    def mean(self, out, params):
        return self._mean_var(out, params)[0]

    def sample(self, out, params, rng):
        mu, var = self._mean_var(out, params)
        return mu + np.sqrt(var) * rng.standard_normal(mu.shape).astype(mu.dtype)


LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": Gaussian}


def get_likelihood(name, **options):
    try:
        cls = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}") from None
    return cls(**options)

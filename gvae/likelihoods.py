"""Observation models p(x|z) from the decoder's output."""
import numpy as np

from . import ops


class Bernoulli:
    """p(x|z) = prod_j Bernoulli(x_j; sigmoid(l_j)) with decoder logits l; x in [0, 1]."""

    name = "bernoulli"

    def output_size(self, n):
        return n

    def check(self, x):
        """Raise unless ``x`` is a finite float array with values in [0, 1]."""
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"bernoulli likelihood: expected float data, got dtype {x.dtype}")
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (0.0 <= lo and hi <= 1.0):
            raise ValueError(f"bernoulli likelihood: data must lie in [0, 1], got values in [{lo}, {hi}]")

    def log_prob(self, out, x):
        """log p(x|z) summed over pixels: out (S, B, n) logits, x (B, n) -> (S, B)."""
        return ops.bernoulli_loglik(out, x)

    def mean(self, out):
        return ops.sigmoid(out)


LIKELIHOODS = {cls.name: cls for cls in (Bernoulli,)}


def get_likelihood(name):
    try:
        return LIKELIHOODS[name]()
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}") from None

"""Evaluation of a trained model on a data set, batched, without taping."""
import numpy as np

from .objectives import elbo


def dataset_elbo(model, params, x, rng, batch_size=500, n_samples=1, kl="analytic"):
    """Mean ELBO per data point (nats) over the rows of x, with fresh noise from ``rng``."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        eps = rng.standard_normal((n_samples, len(xb), model.latent), dtype=model.dtype)
        total += float(np.sum(elbo(model, params, xb, eps, kl), dtype=np.float64))
    return total / len(x)

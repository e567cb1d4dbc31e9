"""The deep variational information bottleneck's numbers on a labelled set (the task classify's validation
and test): its error, rate and objective, with the paper's 12 posterior samples per image at test time.
Batched, without taping, on the device the data live on."""
import numpy as np

from ...kernels import array_module, to_host
from .model import predict

# Posterior samples per image at test time, as Alemi et al. evaluate: the class probabilities are the
# softmax averaged over them.
TEST_SAMPLES = 12


def classifier_scores(model, params, x, y, rng, beta, batch_size=500, n_samples=TEST_SAMPLES):
    """The classifier's numbers on x (N, n_in) with labels y (N,), both on one device, with ``n_samples``
    samples of z per image drawn from ``rng`` (that device's generator): a dict of host floats
    ``error`` (the fraction of images whose averaged softmax's argmax is not the label), ``rate`` (mean
    KL(q(z|x) || N(0, I)), nats), ``log_lik`` (mean over images and samples of log q(y|z), nats) and
    ``objective`` = log_lik - beta rate."""
    xp = array_module(x)
    sums = xp.zeros(3, dtype=np.float64)  # wrong predictions, log_lik, rate: summed on the device
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        eps = rng.standard_normal((n_samples, len(xb), model.noise_size), dtype=model.dtype)
        probs, log_lik, rate = predict(model, params, xb, yb, eps)
        sums += xp.stack([(probs.argmax(axis=-1) != yb).sum(), log_lik.sum(), rate.sum()]).astype(np.float64)
    wrong, log_lik, rate = (to_host(sums) / len(x)).tolist()
    return {"error": wrong, "rate": rate, "log_lik": log_lik, "objective": log_lik - beta * rate}

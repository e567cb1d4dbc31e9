"""benchmarks/step_peers.py: the PyTorch peer of gvae's full family (a dense MultivariateNormal with the
precision L L^T) computes the ELBO and the IWAE bound of a dense NumPy/SciPy reference."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

torch = pytest.importorskip("torch")
spec = importlib.util.spec_from_file_location("step_peers", Path(__file__).resolve().parents[1] / "benchmarks" /
                                              "step_peers.py")
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


def _mlp(layers, h):
    for W, b in layers[:-1]:
        z = h @ W + b
        h = np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    W, b = layers[-1]
    return h @ W + b


@pytest.mark.parametrize("iw", [1, 3])
def test_the_full_peer_is_the_dense_gaussian_bound(iw):
    d, hidden, batch = 3, 8, 5
    rng = np.random.default_rng(0)
    weights = [(W.astype(np.float64), b + 0.1 * rng.standard_normal(b.shape))
               for W, b in peers.init_weights(hidden, d, rng, "full")]
    assert weights[2][0].shape == (hidden, d + d * d)
    x = (rng.random((batch, peers.N_IN)) < 0.3).astype(np.float64)
    eps = rng.standard_normal((iw, batch, d))
    model = peers.torch_vae(d, iw, weights, posterior="full").double()
    got = float(model.loss(torch.from_numpy(x), torch.from_numpy(eps)).detach())
    head = _mlp(weights[:3], x)
    bounds = []
    for n in range(batch):
        mu, block = head[n, :d], head[n, d:].reshape(d, d)
        L = np.tril(block, -1) + np.diag(np.logaddexp(0, np.diag(block)) + 1e-4)
        sigma = np.linalg.inv(L @ L.T)
        z = mu + eps[:, n] @ np.linalg.cholesky(sigma).T                     # (iw, d)
        logits = _mlp(weights[3:], z)
        rec = (x[n] * logits - np.logaddexp(0, logits)).sum(-1)
        if iw == 1:
            kl = 0.5 * (np.trace(sigma) + mu @ mu - d - np.linalg.slogdet(sigma)[1])
            bounds.append(rec[0] - kl)
        else:
            log_w = rec + multivariate_normal(np.zeros(d)).logpdf(z) - multivariate_normal(mu, sigma).logpdf(z)
            bounds.append(logsumexp(log_w) - np.log(iw))
    assert got == pytest.approx(-np.mean(bounds), rel=1e-9)

"""Evaluation throughput: importance sampling of log p(x) (:func:`gvae.evaluation.evaluate.importance_sampling`)
and the whole test evaluation (:func:`gvae.evaluation.evaluate.evaluate`: ELBO pass + importance sampling) of an
untrained 784-500-500-16 ELU VAE with a Bernoulli decoder, float32, within the default 256 MB bound.

Untrained weights cost what trained ones cost. ``gvae eval`` runs the same functions on 1000 test images
and 5000 samples each; here 100 images and 500 samples each (50,000 importance samples per call, in five
decoder passes over the batch of 100 images: the bound allows 121 samples per pass)."""
import time

import numpy as np

from gvae.training import TrainConfig
from gvae.evaluation.evaluate import evaluate, importance_sampling
from gvae.training.runs import build_model

from .common import Benchmark

N_IMAGES = 100
N_SAMPLES = 500
KS = (1, 5, 50)


class ImportanceSampling(Benchmark):
    """log p(x) by importance sampling, per posterior family (sampling and log q run the band kernels)."""

    params = [["diagonal", "extgrid"]]
    param_names = ["posterior"]
    # Each call takes seconds: a few repeats of one call suffice.
    number = 1
    repeat = (1, 5, 60.0)

    def setup(self, posterior):
        config = TrainConfig(posterior=posterior, latent=16, hidden=(500, 500), activation="elu",
                             likelihood="bernoulli", dtype="float32")
        self.model = build_model(config, 784)
        rng = np.random.default_rng(0)
        self.params = self.model.new_params(rng).views
        self.x = (rng.random((N_IMAGES, 784)) < 0.13).astype(np.float32)  # MNIST's mean intensity
        # Numba compilation (or loads from its cache) on a short evaluation: K = 100 takes every path
        # (the ELBO pass, one decoder pass per batch, L_1, L_5 and L_50).
        self._evaluate(N_SAMPLES // 5)

    def _evaluate(self, n_samples):
        _, means, _ = evaluate(self.model, self.params, self.x, n_samples, KS, progress=False)
        if not np.isfinite(means["log_likelihood"]):
            raise RuntimeError("evaluation gave a non-finite log-likelihood")

    def _sample(self, n_samples):
        out = importance_sampling(self.model, self.params, self.x, n_samples, 1, ks=KS,
                                  progress=False)
        if not np.isfinite(out["log_likelihood"]).all():
            raise RuntimeError("importance sampling gave a non-finite log-likelihood")

    def time_importance_sampling(self, posterior):
        self._sample(N_SAMPLES)

    def track_samples_per_second(self, posterior):
        start = time.perf_counter()
        self._sample(N_SAMPLES)
        return N_IMAGES * N_SAMPLES / (time.perf_counter() - start)

    track_samples_per_second.unit = "samples/s"

    def peakmem_evaluate(self, posterior):
        self._evaluate(N_SAMPLES)

"""A trained model as a user holds it: ``gvae.load(run_dir)``.

    import gvae
    vae = gvae.load("runs/chain")              # the best-validation parameters, on the CPU
    z = vae.encode(x).mu                       # x: (N, 784) images in [0, 1]
    images = vae.decode(z)                     # the decoder's mean images
    log_px = vae.log_likelihood(x, k=5000)     # importance-sampled log p(x) per image, nats

A hierarchy (``gvae train --latent 100 50``) works the same way: ``encode`` gives the bottom layer's
posterior, ``encode_layers`` every layer's, ``decode`` takes z_1, and ``sample`` draws from the top down.
The variational ladder's decoder reads every layer's code (``--task vlae``): its ``decode`` takes them all,
a list bottom first.

Images go in as the data sets hold them (floats in [0, 1], shape (N, n)); they are turned into the
model's observations (binarised, or dequantised for continuous likelihoods) where a density is needed,
with a fixed seed, as the evaluation sets are. Outputs are arrays of the device the model was loaded on.
"""
import numpy as np

from .. import models  # noqa: F401  (registers the literature models' tasks: a run of any of them opens)
from ..kernels import generator, on_host, to_device, to_host
from ..model.objectives import elbo
from ..training.batching import observations
from ..training.runs import open_run
from .evaluate import importance_sampling


class TrainedModel:
    """The VAE of a run folder with its trained parameters: ``config`` (the run's TrainConfig),
    ``model`` (the :class:`gvae.model.VAE`), ``params`` (name -> array) and ``device``."""

    def __init__(self, run_dir, which="best", device="cpu"):
        self.run_dir = run_dir
        self.device = device
        run = open_run(run_dir, which, device)
        self.model, self.params, self.config = run.model, run.params, run.config

    def __repr__(self):
        c = self.config
        return (f"TrainedModel({str(self.run_dir)!r}: {c.posterior} posterior, latent {c.latent}, hidden "
                f"{list(c.hidden)}, {c.likelihood} likelihood, on {self.device})")

    def _images(self, x):
        x = to_device(np.ascontiguousarray(x, dtype=self.model.dtype) if on_host(x) else x,
                      self.device)
        if x.ndim != 2 or x.shape[1] != self.model.n_in:
            raise ValueError(f"expected images of shape (N, {self.model.n_in}), got {tuple(x.shape)}")
        self.model.likelihood.check(to_host(x))
        return x

    def _observed(self, x, seed):
        """Images as the model's observations (binarised or dequantised with ``seed``)."""
        return observations(self._images(x), self.model.likelihood, generator(self.device, seed))

    def encode(self, x):
        """The posterior q(z|x) of each image: the family's parameters, a record
        (:class:`gvae.model.posteriors.PosteriorParams`) whose ``mu`` (N, d) is the posterior mean (a banded
        family adds its factor ``L`` (N, K, d) and ``offsets``). In a hierarchy: the bottom layer's,
        ``encode_layers(x)[0]``."""
        return self.model.encode(self.params, self._images(x))

    def encode_layers(self, x):
        """Every stochastic layer's posterior parameters, a list bottom first of records as :meth:`encode`
        gives (``mu`` of layer l: (N, d_l)), from the mean pass: each layer conditioned on the
        posterior means of the layers it depends on (bottom-up: q(z_2 | mu_1), ...; top-down:
        q(z_1 | mu_2, x), ...). One layer: ``[encode(x)]``."""
        return self.model.infer(self.params, self._images(x))[0]

    def decode(self, z):
        """The decoder's mean image (the median for logit-normal likelihoods) for latent points z (N, d)
        (in a hierarchy, points z_1 of the bottom layer; of the ladder, a list bottom first of every layer's
        (N, d_l))."""
        model, codes = self.model, self.model.decoded_codes
        zs = list(z) if isinstance(z, (list, tuple)) else [z]
        want = ", ".join(f"(N, {d})" for d in model.sizes[:codes])
        if len(zs) != codes:
            raise ValueError(f"the decoder reads {codes} layer{'s' if codes > 1 else ''}' codes ({want}, bottom "
                             f"first), got {len(zs)}")
        zs = [to_device(np.asarray(c, dtype=model.dtype) if on_host(c) else c, self.device) for c in zs]
        if any(c.ndim != 2 or c.shape != (zs[0].shape[0], d) for c, d in zip(zs, model.sizes)):
            raise ValueError(f"expected latent points of shape {want}, got "
                             + ", ".join(str(tuple(c.shape)) for c in zs))
        return model.likelihood.mean(model.likelihood_params(self.params, zs), self.params)

    def sample(self, n, seed=0, mean=True):
        """n images from the model: z ~ N(0, I) (in a hierarchy z_L ~ N(0, I), then each z_l | z_{l+1}
        down to z_1; the ladder's every code from N(0, I)), then the decoder's mean (``mean``) or a draw of x|z."""
        rng = generator(self.device, seed)
        eps = rng.standard_normal((int(n), self.model.noise_size), dtype=self.model.dtype)
        out = self.model.likelihood_params(self.params, self.model.prior_sample(self.params, eps))
        lik = self.model.likelihood
        return lik.mean(out, self.params) if mean else lik.sample(out, self.params, rng)

    def reconstruct(self, x):
        """The decoder's mean image at each image's posterior mean, every layer's from the mean pass:
        decode(encode(x).mu) (the ladder: decode of every layer's mean)."""
        means = [q.mu for q in self.encode_layers(x)]
        return self.decode(means[:self.model.decoded_codes])

    def elbo(self, x, seed=0):
        """The ELBO of each image (nats of the data, one Monte Carlo sample; analytic KL where the run's is)."""
        obs = self._observed(x, seed)
        eps = generator(self.device, seed + 1).standard_normal((1, len(obs), self.model.noise_size),
                                                              dtype=self.model.dtype)
        return elbo(self.model, self.params, obs, eps, self.config.kl) + self.model.likelihood.nats_offset()

    def log_likelihood(self, x, k=5000, seed=0, batch_size=100):
        """Importance-sampled log p(x) of each image with k samples (the IWAE bound L_k, nats of the
        data), float64 (N,) on the model's device."""
        obs = self._observed(x, seed)
        return importance_sampling(self.model, self.params, obs, int(k), seed + 1, ks=(),
                                   batch_size=batch_size, progress=False)["log_likelihood"]


def load(run_dir, which="best", device="cpu"):
    """The trained model of a run folder written by ``gvae train``: ``which`` parameters ("best" by
    validation, or "last"), on ``device``; see :class:`TrainedModel`."""
    return TrainedModel(run_dir, which, device)

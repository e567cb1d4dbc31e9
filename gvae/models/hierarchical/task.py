"""The task ``hvm``: a VAE whose posterior is a hierarchical variational model (:mod:`gvae.models.hierarchical.model`;
Ranganath, Tran, Blei 2016), q(z|x) = integral q(lambda|x) prod_i q(z_i|lambda_i), trained on the auxiliary
bound with a reverse model r(lambda|z, x).

Data and batches are those of the task ``generate``. Validation and test report the auxiliary bound
(``valid_elbo``, ``test_elbo``: below the ELBO of the hierarchical q, itself below log p(x)), with the noise
of EVAL_SEED; the test summary adds ``test_log_px``, the importance-sampling bound on the extended space
(z, lambda) with K = 1,000 draws on the first 1,000 test images
(:func:`gvae.training.validation.log_px_estimate`)."""
import numpy as np

from ...kernels import generator
from .model import HVM, hvm_loss, log_weights
from ...training.batching import EVAL_SEED
from ...training.validation import log_px_estimate, log_px_summary
from ...training.tasks.base import changed_flags, one_bound, read_by_weights, register_task, require
from ...training.tasks.generate import Generate, likelihood_options


@register_task("hvm")
class Hierarchical(Generate):
    """The HVM: the loss is :func:`hvm_loss` (the auxiliary bound, its log-ratio weighted by the trainer's
    ``kl_weight``)."""
    about = ("a VAE whose posterior is a hierarchical variational model (Ranganath et al. 2016): q(z|x) mixes the "
             "mean-field posterior over its parameters lambda ~ q(lambda|x) of the --posterior family, trained on "
             "the auxiliary bound with a reverse model r(lambda|z, x)")
    cannot_open = read_by_weights("a hierarchical variational model (--task hvm)", "bound")
    draws_prior = True
    loss = staticmethod(hvm_loss)

    @classmethod
    def check_config(cls, config):
        """One stochastic layer; the auxiliary bound alone (no IWAE, target rate, MMD or alpha); no KL
        estimator (the bound has no closed-form KL); lattices chosen for lambda's 2 d units (no --grid-shape)."""
        changed = changed_flags(config, ("kl", "grid_shape", "inference", "merge"))
        require([(len(config.layer_sizes()) == 1, "task hvm has one stochastic layer: give one --latent size"),
                 (one_bound(config), "task hvm trains its auxiliary bound: use it without --iw-samples, "
                                     "--target-rate, --mmd or --alpha"),
                 (not changed, "task hvm estimates its whole bound by sampling, and its lattice lies on lambda's "
                               "2 d units: leave " + ", ".join(changed) + " at the default")])

    @classmethod
    def build_model(cls, config, n_in):
        return HVM(n_in, config.latent, config.layer_hidden()[0], config.activation, config.posterior,
                   config.likelihood, np.dtype(config.dtype), likelihood_options=likelihood_options(config), init=config.init)

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` draws of (lambda, z)'s noise per image, from ``rng``."""
        (x,) = batch
        model = self.model
        eps = rng.standard_normal((self.config.samples, len(x), model.noise_size), dtype=model.dtype)
        return self.step_inputs(x=x, eps=eps, kl_weight=kl_weight)

    def log_weights(self, params):
        """(x (B, n), eps (K, B, noise_size)) -> the extended space's log-weights (K, B)."""
        return lambda xb, eps: sum(log_weights(self.model, params, xb, eps))

    def elbo(self, params, x, batch_size=500):
        """The mean auxiliary bound of the observations x (nats per image), one draw each with the noise of
        EVAL_SEED (:func:`log_px_estimate` with one sample: the mean log-weight): a host float, one read."""
        model = self.model
        return log_px_estimate(self.log_weights(params), model.noise_size, model.dtype, x,
                               generator(self.device, EVAL_SEED), samples=1, images=len(x),
                               batch_size=batch_size)[0] + model.likelihood.nats_offset()

    def test_summary(self, params, test, best_valid):
        """The test bound, ``test_log_px`` (the extended space's importance-sampling bound, noise from
        EVAL_SEED) with ``log_px_samples`` and ``log_px_images``, and the best validation bound."""
        estimate = log_px_summary(self.log_weights(params), self.model, test[0], generator(self.device, EVAL_SEED))
        return {"task": self.name, **super().test_summary(params, test, best_valid), **estimate}

    def epoch_line(self, row):
        return f"train bound {row['train_bound']:.3f}  valid auxiliary bound {row['valid_elbo']:.3f} nats/image"

    def result_line(self, summary):
        return (f"test auxiliary bound {summary['test_elbo']:.3f} nats, log p(x) ~ {summary['test_log_px']:.3f} "
                f"(L_{summary['log_px_samples']} on (z, lambda), first {summary['log_px_images']} test images)")

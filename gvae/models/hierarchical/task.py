"""The task ``hvm``: a VAE whose posterior is a hierarchical variational model (:mod:`gvae.models.hierarchical.model`;
Ranganath, Tran, Blei 2016), q(z|x) = integral q(lambda|x) prod_i q(z_i|lambda_i), trained on the auxiliary
bound with a reverse model r(lambda|z, x).

Data and batches are those of the task ``generate`` (:mod:`gvae.training.tasks.images`). Validation and test
report the auxiliary bound (``valid_elbo``, ``test_elbo``: below the ELBO of the hierarchical q, itself below
log p(x)), with the noise of EVAL_SEED; the test summary adds ``test_log_px``, the importance-sampling bound
on the extended space (z, lambda) with K = 1,000 draws on the first 1,000 test images
(:func:`gvae.training.tasks.report.weights_log_px`)."""
import functools

import numpy as np

from .model import HVM, hvm_loss, log_weights
from ...training.tasks import images
from ...training.tasks.base import Settings, Task, changed_flags, one_bound, register_task, require
from ...training.tasks.reading import Reading, read_by_weights
from ...training.tasks.report import ElboReport, weights_elbo
from ...training.validation import LOG_PX_SAMPLES


def check_hvm(config):
    """One stochastic layer; the auxiliary bound alone (no IWAE, target rate, MMD or alpha); no KL
    estimator (the bound has no closed-form KL); lattices chosen for lambda's 2 d units (no --grid-shape)."""
    changed = changed_flags(config, ("kl", "grid_shape", "inference", "merge"))
    require([(len(config.layer_sizes()) == 1, "task hvm has one stochastic layer: give one --latent size"),
             (one_bound(config), "task hvm trains its auxiliary bound: use it without --iw-samples, "
                                 "--target-rate, --mmd or --alpha"),
             (not changed, "task hvm estimates its whole bound by sampling, and its lattice lies on lambda's "
                           "2 d units: leave " + ", ".join(changed) + " at the default")])


def hvm_epoch_line(row):
    """The line after an epoch: the training bound and the validation auxiliary bound."""
    return f"train bound {row['train_bound']:.3f}  valid auxiliary bound {row['valid_elbo']:.3f} nats/image"


def hvm_result_line(summary):
    """The result: the test auxiliary bound and the importance-sampling bound on (z, lambda)."""
    return (f"test auxiliary bound {summary['test_elbo']:.3f} nats, log p(x) ~ {summary['test_log_px']:.3f} "
            f"(L_{summary['log_px_samples']} on (z, lambda), first {summary['log_px_images']} test images)")


@register_task("hvm")
class Hierarchical(Task):
    """The HVM: the loss is :func:`hvm_loss` (the auxiliary bound, its log-ratio weighted by the trainer's
    ``kl_weight``)."""
    settings = Settings(about="a VAE whose posterior is a hierarchical variational model (Ranganath et al. 2016): "
                              "q(z|x) mixes the mean-field posterior over its parameters lambda ~ q(lambda|x) of "
                              "the --posterior family, trained on the auxiliary bound with a reverse model "
                              "r(lambda|z, x)", binarizes=True, check=check_hvm)
    loss = staticmethod(hvm_loss)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches

    @staticmethod
    def build_model(config, n_in):
        return HVM(n_in, config.latent, config.layer_hidden()[0], config.activation, config.posterior,
                   config.likelihood, np.dtype(config.dtype), likelihood_options=images.likelihood_options(config),
                   init=config.init)

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` draws of (lambda, z)'s noise per image, from ``rng``."""
        (x,) = batch
        model = self.model
        eps = rng.standard_normal((self.config.samples, len(x), model.noise_size), dtype=model.dtype)
        return self.step_inputs(x=x, eps=eps, kl_weight=kl_weight)

    @functools.cached_property
    def report(self):
        """The ELBO's with the auxiliary bound of one draw a point by the extended space's log-weights, and the
        summary's importance-sampling bound on (z, lambda)."""
        return ElboReport(self, weights_elbo, log_px=LOG_PX_SAMPLES, epoch_line=hvm_epoch_line,
                          result_line=hvm_result_line)

    @functools.cached_property
    def reading(self):
        """By the extended space's log-weights (x (B, n), eps (K, B, noise_size)) -> (K, B)."""
        return Reading(self, cannot_open=read_by_weights("a hierarchical variational model (--task hvm)", "bound"),
                       terms=log_weights, draws_prior=True)

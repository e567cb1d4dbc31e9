"""The task ``gammadef``: the sparse gamma deep exponential family (:mod:`gvae.models.gamma_def.model`; Ranganath et
al. 2015) on binarised images, one layer of gamma units per ``--latent`` size (bottom first), an amortised
gamma encoder trained by implicit reparameterisation gradients on the Monte Carlo ELBO (``--samples S``
draws a point; ``--beta`` and ``--warmup`` weigh the latent terms).

Data, batches, validation (the ELBO, one draw a point) and the test summary (the ELBO and ``test_log_px``,
here L_100 on the first 1,000 test images) are those of the task ``sbn``, with the gamma DEF's uniforms.
With ``--def-weights gamma`` the weights are random too: each step draws them once for the batch, after the
codes' uniforms, and the bound per image subtracts their KL over the training set's size (``train_weight_kl``
in the metrics rows); validation and the test score the posterior mean of the weights, and the summary adds
the weights' KL in closed form."""
import functools

import numpy as np

from .model import GammaDEF, gamma_def_loss, log_weights, open_uniform, weight_kl
from .options import GammaDefOptions
from ...training.tasks import images
from ...training.tasks.base import LIKELIHOOD_SETTINGS, Settings, Task, changed_flags, register_task, require
from ...training.tasks.reading import Reading, read_by_weights
from ...training.tasks.report import ElboReport, weights_elbo

# Each draw is an inverse incomplete gamma function, far dearer than a Gaussian draw: L_100, not L_1000, at
# the test.
LOG_PX_SAMPLES = 100


def check_gamma_def(config):
    """The ELBO alone (no IWAE, target rate, MMD or alpha); none of a Gaussian posterior's settings (family,
    lattice, KL estimator, inference order, merge); the Bernoulli pixels of its Poisson link."""
    changed = changed_flags(config, ("posterior", "grid_shape", "kl", "inference", "merge", *LIKELIHOOD_SETTINGS))
    require([(config.iw_samples == 1 and config.target_rate is None and config.mmd == 0 and config.alpha == 0,
              "task gammadef trains the ELBO: use it without --iw-samples, --target-rate, --mmd or --alpha"),
             (not changed, "task gammadef has gamma units and binary pixels through a Poisson rate: leave "
                           + ", ".join(changed) + " at the default")])


def weight_numbers(task, params, test):
    """The gamma weights' KL in closed form, in all and per training image."""
    total = weight_kl(task.model, params)
    return {"weight_kl": total, "weight_kl_per_image": total / task.data_size}


@register_task("gammadef")
class GammaDef(Task):
    """The sparse gamma DEF: the loss is :func:`gamma_def_loss`."""
    settings = Settings(about="the sparse gamma deep exponential family (Ranganath et al. 2015): layers of gamma "
                              "units, each the mean of the one below, binary pixels through a Poisson rate, an "
                              "amortised gamma encoder trained by implicit reparameterisation",
                        Options=GammaDefOptions, binarizes=True, posterior_family=False, check=check_gamma_def)
    loss = staticmethod(gamma_def_loss)
    inputs, batches = images.inputs, images.batches

    @staticmethod
    def build_model(config, n_in):
        return GammaDEF(n_in, config.layer_sizes(), config.layer_hidden()[0], config.activation,
                        np.dtype(config.dtype), config.init, weights=config.options.def_weights)

    def on_device(self, inputs):
        """The images' (:func:`images.on_device`); the training set's size N is kept: gamma weights' KL is
        divided by it."""
        self.data_size = len(inputs["train"][0])
        return images.on_device(self, inputs)

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` uniforms per unit and image, from ``rng``, and the latent terms' weight; with gamma
        weights then their uniforms (one draw for the batch) and the training set's size."""
        (x,) = batch
        model = self.model
        u = open_uniform(rng, (self.config.samples, len(x), model.noise_size), model.dtype)
        if model.weight_kind == "point":
            return self.step_inputs(x=x, u=u, kl_weight=kl_weight)
        u_w = open_uniform(rng, (model.weight_noise_size,), model.dtype)
        return self.step_inputs(x=x, u=u, kl_weight=kl_weight, u_w=u_w, data_size=self.data_size)

    @functools.cached_property
    def report(self):
        """The ELBO's of one draw a point by the task's log-weights and the summary's L_100; with gamma weights
        (scored at their posterior mean) ``train_weight_kl`` (nats per image, inside ``train_bound``) and the
        weights' KL in the summary."""
        if self.model.weight_kind == "point":
            return ElboReport(self, weights_elbo, log_px=LOG_PX_SAMPLES)
        return ElboReport(self, weights_elbo, extra=("weight_kl",), log_px=LOG_PX_SAMPLES, more=weight_numbers)

    @functools.cached_property
    def reading(self):
        return Reading(self, cannot_open=read_by_weights("a sparse gamma DEF (--task gammadef)"), terms=log_weights,
                       noise=open_uniform, draws_prior=True)

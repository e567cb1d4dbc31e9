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
import numpy as np

from .model import GammaDEF, gamma_def_loss, log_weights, open_uniform, weight_kl
from .options import GammaDefOptions
from ...training.tasks.base import LIKELIHOOD_SETTINGS, changed_flags, read_by_weights, register_task, require
from ..binary.task import Binary


@register_task("gammadef")
class GammaDef(Binary):
    """The sparse gamma DEF: the loss is :func:`gamma_def_loss`."""
    about = ("the sparse gamma deep exponential family (Ranganath et al. 2015): layers of gamma units, each the mean "
             "of the one below, binary pixels through a Poisson rate, an amortised gamma encoder trained by implicit "
             "reparameterisation")
    Options = GammaDefOptions
    cannot_open = read_by_weights("a sparse gamma DEF (--task gammadef)")
    loss = staticmethod(gamma_def_loss)
    noise = staticmethod(open_uniform)
    # each draw is an inverse incomplete gamma function, far dearer than a Gaussian draw: L_100, not L_1000, at the test
    log_px_samples = 100

    @classmethod
    def check_config(cls, config):
        """The ELBO alone (no IWAE, target rate, MMD or alpha); none of a Gaussian posterior's settings (family,
        lattice, KL estimator, inference order, merge); the Bernoulli pixels of its Poisson link."""
        changed = changed_flags(config, ("posterior", "grid_shape", "kl", "inference", "merge", *LIKELIHOOD_SETTINGS))
        require([(config.iw_samples == 1 and config.target_rate is None and config.mmd == 0 and config.alpha == 0,
                  "task gammadef trains the ELBO: use it without --iw-samples, --target-rate, --mmd or --alpha"),
                 (not changed, "task gammadef has gamma units and binary pixels through a Poisson rate: leave "
                               + ", ".join(changed) + " at the default")])

    @classmethod
    def build_model(cls, config, n_in):
        return GammaDEF(n_in, config.layer_sizes(), config.layer_hidden()[0], config.activation,
                        np.dtype(config.dtype), config.init, weights=config.options.def_weights)

    def __init__(self, config, model, device):
        super().__init__(config, model, device)
        if model.weight_kind == "gamma":  # the loss's aux adds the weights' KL per image
            self.reported = (*self.reported, "weight_kl")

    def on_device(self, inputs):
        """As the task ``sbn``; the training set's size N is kept: gamma weights' KL is divided by it."""
        self.data_size = len(inputs["train"][0])
        return super().on_device(inputs)

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` uniforms per unit and image, from ``rng``, and the latent terms' weight; with gamma
        weights then their uniforms (one draw for the batch) and the training set's size."""
        (x,) = batch
        model = self.model
        u = self.noise(rng, (self.config.samples, len(x), model.noise_size), model.dtype)
        if model.weight_kind == "point":
            return self.step_inputs(x=x, u=u, kl_weight=kl_weight)
        u_w = self.noise(rng, (model.weight_noise_size,), model.dtype)
        return self.step_inputs(x=x, u=u, kl_weight=kl_weight, u_w=u_w, data_size=self.data_size)

    def train_row(self, means):
        """As the task ``sbn``'s; with gamma weights ``train_weight_kl`` (nats per image, inside ``train_bound``)."""
        if self.model.weight_kind == "point":
            return super().train_row(means)
        return {**super().train_row(means[:3]), "train_weight_kl": means[3]}

    def test_summary(self, params, test, best_valid):
        """As the task ``sbn``'s (at the weights' posterior mean with gamma weights), and with gamma weights
        their KL in closed form, in all and per training image."""
        summary = super().test_summary(params, test, best_valid)
        if self.model.weight_kind == "point":
            return summary
        total = weight_kl(self.model, params)
        return {**summary, "weight_kl": total, "weight_kl_per_image": total / self.data_size}

    def log_weights(self, params):
        """(x (B, n), u (K, B, noise_size)) -> the samples' log-weights (K, B)."""
        return lambda xb, u: sum(log_weights(self.model, params, xb, u))

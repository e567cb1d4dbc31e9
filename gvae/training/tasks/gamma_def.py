"""The task ``gammadef``: the sparse gamma deep exponential family (:mod:`gvae.model.gamma_def`; Ranganath et
al. 2015) on binarised images, one layer of gamma units per ``--latent`` size (bottom first), an amortised
gamma encoder trained by implicit reparameterisation gradients on the Monte Carlo ELBO (``--samples S``
draws a point; ``--beta`` and ``--warmup`` weigh the latent terms).

Data, batches, validation (the ELBO, one draw a point) and the test summary (the ELBO and ``test_log_px``,
here L_100 on the first 1,000 test images) are those of the task ``sbn``, with the gamma DEF's uniforms."""
import numpy as np

from ...model.gamma_def import GammaDEF, gamma_def_loss, log_weights, open_uniform
from .base import LIKELIHOOD_SETTINGS, changed_flags, register_task, require
from .binary import Binary


@register_task("gammadef")
class GammaDef(Binary):
    """The sparse gamma DEF: the loss is :func:`gamma_def_loss`."""
    about = ("the sparse gamma deep exponential family (Ranganath et al. 2015): layers of gamma units, each the mean "
             "of the one below, binary pixels through a Poisson rate, an amortised gamma encoder trained by implicit "
             "reparameterisation")
    options = ()
    cannot_open = ("a sparse gamma DEF (--task gammadef), which gvae eval, sample, plot and analyze do not read: its "
                   "test ELBO and log p(x) estimate are in its summary.json")
    loss = staticmethod(gamma_def_loss)
    noise = staticmethod(open_uniform)
    # each draw is an inverse incomplete gamma function (about 3 us on this CPU): L_100, not L_1000, at the test
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
                        np.dtype(config.dtype), config.init)

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` uniforms per unit and image, from ``rng``, and the latent terms' weight."""
        (x,) = batch
        model = self.model
        return x, self.noise(rng, (self.config.samples, len(x), model.noise_size), model.dtype), kl_weight

    def log_weights(self, params):
        """(x (B, n), u (K, B, noise_size)) -> the samples' log-weights (K, B)."""
        return lambda xb, u: sum(log_weights(self.model, params, xb, u))

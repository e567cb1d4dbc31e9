"""The task ``sbn``: a VAE with one layer of binary latent units (:mod:`gvae.models.binary.model`; a sigmoid belief
network's layer with an amortised encoder), trained by a score-function gradient (``--estimator``): on the
multi-sample bound L_K (K = ``--iw-samples``, 2 or more) with VIMCO's leave-one-out signals, or on the
ELBO with NVIL's learned baseline or DARN's Taylor signals.

Data and batches are those of the task ``generate``. Validation and test give the ELBO (L_1, one sample a
point, noise of EVAL_SEED); the test summary adds ``test_log_px``, L_1000 on the first 1,000 test images
(:func:`gvae.training.validation.log_px_summary`)."""
import numpy as np

from ...kernels import generator
from .model import BinaryVAE, binary_loss
from .options import BinaryOptions
from ...training.batching import EVAL_SEED
from ...training.validation import LOG_PX_SAMPLES, log_px_estimate, log_px_summary
from ...training.tasks.base import changed_flags, read_by_weights, register_task, require
from ...training.tasks.generate import Generate, likelihood_options


def uniform(rng, shape, dtype):
    """The noise of a binary layer's pass: uniforms on [0, 1)."""
    return rng.random(shape, dtype=dtype)


@register_task("sbn")
class Binary(Generate):
    """The binary-latent VAE: the loss is :func:`binary_loss` of the run's estimator."""
    about = ("a VAE with one layer of binary latent units (a sigmoid belief network's) and a learned Bernoulli prior, "
             "trained by a score-function gradient: --estimator vimco (the bound over --iw-samples K >= 2, Mnih and "
             "Rezende 2016), nvil (the ELBO with a learned baseline, Mnih and Gregor 2014) or taylor (the ELBO with "
             "DARN's first-order Taylor signals, Gregor et al. 2014)")
    Options = BinaryOptions
    cannot_open = read_by_weights("a VAE with binary latent units (--task sbn)")
    draws_prior = True
    posterior_family = False  # the codes' posterior is the task's own (Bernoulli units), whatever --posterior says
    loss = staticmethod(binary_loss)
    noise = staticmethod(uniform)
    log_px_samples = LOG_PX_SAMPLES  # K of the test's L_K

    @classmethod
    def check_config(cls, config):
        """One layer; K = iw_samples >= 2 with VIMCO (the leave-one-out baseline), 1 with NVIL; the bound alone
        (no target rate, MMD, alpha, beta or warm-up); no Gaussian posterior's settings (family, lattice, KL
        estimator, samples)."""
        changed = changed_flags(config, ("posterior", "grid_shape", "kl", "samples", "beta", "warmup", "inference",
                                         "merge"))
        task = f"task {cls.name}"
        require([(len(config.layer_sizes()) == 1 or not cls.one_layer,
                  f"{task} has one stochastic layer: give one --latent size"),
                 (config.options.estimator in cls.estimators, f"{task} trains with --estimator "
                                                      + " or ".join(cls.estimators) + f", not {config.options.estimator}"),
                 (config.options.estimator != "vimco" or config.iw_samples >= 2,
                  f"{task} with VIMCO trains the bound over K samples with a leave-one-out baseline: give "
                  "--iw-samples K with K >= 2"),
                 (config.options.estimator not in ("nvil", "taylor") or config.iw_samples == 1,
                  f"{task} with --estimator {config.options.estimator} trains the ELBO, one sample a point: leave "
                  "--iw-samples at 1"),
                 (config.target_rate is None and config.mmd == 0 and config.alpha == 0,
                  f"{task} trains its bound alone: use it without --target-rate, --mmd or --alpha"),
                 (not changed, f"{task} has binary latent units and trains its K-sample bound: leave "
                               + ", ".join(changed) + " at the default")])

    autoregressive = False  # DARN's layer (task darn) reads the units before each unit
    one_layer = True  # one stochastic layer (the sigmoid belief DEF, task sbndef, stacks several)
    estimators = ("vimco", "nvil", "taylor")  # the --estimator choices the task trains with

    @classmethod
    def build_model(cls, config, n_in):
        return BinaryVAE(n_in, config.latent, config.layer_hidden()[0], config.activation, config.likelihood,
                         np.dtype(config.dtype), likelihood_options(config), config.init,
                         baseline=config.options.estimator == "nvil", autoregressive=cls.autoregressive)

    def step_args(self, batch, rng, kl_weight):
        """K = ``iw_samples`` uniforms per latent unit and image, from ``rng``, and the estimator."""
        (x,) = batch
        model = self.model
        return self.step_inputs(x=x, u=self.noise(rng, (self.config.iw_samples, len(x), model.noise_size), model.dtype),
                                estimator=self.config.options.estimator)

    def log_weights(self, params):
        """(x (B, n), u (K, B, latent)) -> the samples' log-weights (K, B)."""
        return lambda xb, u: sum(self.model.log_weights(params, xb, u)[:2])

    def elbo(self, params, x, batch_size=500):
        """The mean ELBO (one sample a point, the noise of EVAL_SEED) of the observations x, nats per image
        (:func:`log_px_estimate` with one sample: the mean log-weight): a host float, one read."""
        model = self.model
        return log_px_estimate(self.log_weights(params), model.noise_size, model.dtype, x,
                               generator(self.device, EVAL_SEED), samples=1, images=len(x), batch_size=batch_size,
                               noise=self.noise)[0] + model.likelihood.nats_offset()

    def test_summary(self, params, test, best_valid):
        """The test ELBO and ``test_log_px`` (L_K, K = ``log_px_samples``, on the first 1,000 test images, noise
        of EVAL_SEED)."""
        estimate = log_px_summary(self.log_weights(params), self.model, test[0], generator(self.device, EVAL_SEED),
                                  noise=self.noise, samples=self.log_px_samples)
        return {"task": self.name, **super().test_summary(params, test, best_valid), **estimate}

    def result_line(self, summary):
        return (f"{super().result_line(summary)}, log p(x) ~ {summary['test_log_px']:.3f} (L_{summary['log_px_samples']}"
                f", first {summary['log_px_images']} test images)")

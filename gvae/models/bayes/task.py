"""The task ``fullvb``: full variational Bayes over the decoder's weights (:mod:`gvae.models.bayes.model`; AEVB's
appendix F), a VAE of the images whose decoder has a Gaussian posterior over its weights under the prior
N(0, s^2 I), s = ``--weight-prior-scale``, diagonal or banded over each unit's inputs (``--weight-posterior``).

Data, batches and likelihoods are those of the task ``generate`` (:mod:`gvae.training.tasks.images`); each
step also draws the weights' noise, one draw for the batch. The metrics rows add ``train_weight_kl`` (the
weights' KL over the data size, nats per image, inside ``train_bound``). Validation scores the posterior
mean of the weights (``valid_elbo``); the test summary has the ELBO at the mean weights (``test_elbo``) and
its mean over WEIGHT_DRAWS draws of the weights (``test_elbo_sampled``: E_q(theta) ELBO, a lower bound on
the log of the predictive E_q(theta) p(x|theta)), and the weights' KL."""
import functools

from ...kernels import generator, to_host
from .model import (BayesianDecoderVAE, bayes_loss, draw_weight_noise, sampled_weights, weight_bands,
                    weight_kl)
from .options import BayesOptions
from ...training.batching import EVAL_SEED
from ...training.config import largest_rate_control
from ...training.tasks import images
from ...training.tasks.base import Settings, Task, one_bound, register_task, require
from ...training.tasks.reading import Reading
from ...training.tasks.report import ElboReport
from ...training.validation import dataset_elbo

WEIGHT_DRAWS = 10
WEIGHT_STREAM = 2  # the test's weight draws: a stream of their own after EVAL_SEED


def check_fullvb(config):
    """One stochastic layer, the ELBO alone (no IWAE, target rate, MMD or alpha), the weights' prior scale
    within what training in the run's dtype holds, and a banded weight posterior's stencil possible over
    every decoder layer's inputs (the code, then the hidden widths)."""
    # The prior N(0, s^2) weighs each weight's mu^2 by 1 / (2 s^2): that weight is held to the bound of the
    # loss's weights, and s^2 to it too (s = 1e308 overflowed s^2 even in float64).
    most, scale = largest_rate_control(config.dtype), config.options.weight_prior_scale
    low, high = most ** -0.5, most ** 0.5
    require([(low <= scale <= high, f"weight_prior_scale {scale:g} is beyond {config.dtype} training: it must "
                                    f"lie in [{low:.3g}, {high:.3g}] with dtype {config.dtype} (beyond it s^2 or "
                                    "1 / s^2 overflows the training steps)"),
             (len(config.layer_sizes()) == 1, "task fullvb has one stochastic layer: give one --latent size"),
             (one_bound(config), "task fullvb trains the ELBO with its weights' KL: use it without --iw-samples, "
                                 "--target-rate, --mmd or --alpha")])
    if config.options.weight_posterior != "diagonal":
        fan_ins = (config.layer_sizes()[0], *config.layer_hidden()[0][::-1])
        for k, fan_in in enumerate(fan_ins):
            weight_bands(config.options.weight_posterior, f"dec.W{k}", fan_in)


def weight_numbers(task, params, test):
    """The mean over WEIGHT_DRAWS draws of the weights of the test ELBO, and the weights' KL (nats in all,
    and per training image)."""
    rng, model = generator(task.device, (EVAL_SEED, WEIGHT_STREAM)), task.model
    sampled = sum(dataset_elbo(model, sampled_weights(model, params, draw_weight_noise(model, rng)), test[0],
                               generator(task.device, EVAL_SEED), kl=task.config.kl)
                  for _ in range(WEIGHT_DRAWS)) / WEIGHT_DRAWS
    total_kl = float(to_host(weight_kl(model, params)))
    return {"test_elbo_sampled": sampled, "weight_kl": total_kl, "weight_kl_per_image": total_kl / task.data_size}


def bayes_result_line(summary):
    """The result: the test ELBO at the mean weights and over their draws, and the weights' KL."""
    return (f"test ELBO {summary['test_elbo']:.3f} nats at the mean weights, {summary['test_elbo_sampled']:.3f} "
            f"over {WEIGHT_DRAWS} draws; weights' KL {summary['weight_kl_per_image']:.3f} nats per training image")


@register_task("fullvb")
class FullBayes(Task):
    """The VAE with a Bayesian decoder: the loss is :func:`bayes_loss` over the training set's size."""
    settings = Settings(about="full variational Bayes over the decoder's weights (Kingma and Welling 2014, appendix "
                              "F): a Gaussian posterior over the weights (--weight-posterior: diagonal, or banded "
                              "over each unit's inputs) under the prior N(0, s^2), s = --weight-prior-scale",
                        Options=BayesOptions, binarizes=True, check=check_fullvb)
    loss = staticmethod(bayes_loss)
    inputs, batches = images.inputs, images.batches

    @staticmethod
    def build_model(config, n_in):
        return BayesianDecoderVAE(**images.vae_arguments(config, n_in), prior_scale=config.options.weight_prior_scale,
                                  weight_posterior=config.options.weight_posterior)

    def on_device(self, inputs):
        """The images' (:func:`images.on_device`); the training set's size N is kept: the weights' KL is
        divided by it."""
        self.data_size = len(inputs["train"][0])
        return images.on_device(self, inputs)

    def step_args(self, batch, rng, kl_weight):
        """The posterior's noise (S samples per image), then the weights' noise, from ``rng`` in that order."""
        cfg, model = self.config, self.model
        (x,) = batch
        eps = rng.standard_normal((cfg.samples, len(x), model.noise_size), dtype=model.dtype)
        return self.step_inputs(x=x, eps=eps, eps_w=draw_weight_noise(model, rng), kl=cfg.kl, kl_weight=kl_weight,
                                data_size=self.data_size)

    @functools.cached_property
    def report(self):
        """The ELBO's at the mean weights (``train_bound`` with the weights' KL), ``train_weight_kl``, and
        the summary's :func:`weight_numbers`."""
        return ElboReport(self, extra=("weight_kl",), more=weight_numbers, result_line=bayes_result_line)

    @functools.cached_property
    def reading(self):
        return Reading(self, cannot_open="a VAE with a Bayesian decoder (--task fullvb), whose weight posterior gvae "
                                         "eval, sample, plot and analyze do not read: its test ELBOs are in its "
                                         "summary.json")

"""The task ``mae``: the Mutual Autoencoder (:mod:`gvae.models.mutual.model`), a VAE of the binarised images whose
generative model is held at the mutual information ``--mi-target`` M (nats) by the penalty weight
``--mi-weight`` C.

Data, batches, validation ELBO and the best epoch are those of the task ``generate``
(:mod:`gvae.training.tasks.images`, :class:`gvae.training.tasks.report.ElboReport`); each step also draws B
pairs (z, x') from the model (z ~ N(0, I) and the uniforms that binarise x'). The metrics rows add the
information estimate: ``train_mi`` (the steps' batch estimates) and ``valid_mi``, H(z) + mean log r(z|x')
over MI_PAIRS pairs drawn with EVAL_SEED. The test summary has the test ELBO, its rate and distortion (the
mean KL and the mean -log p(x|z) of the test images) and the estimate over MI_PAIRS fresh pairs
(:class:`MutualReport`)."""
import functools

import numpy as np

from ...kernels import array_module, generator, to_host
from .model import MutualAutoencoder, generated_terms, information, mutual_loss
from .options import MutualOptions
from ...model.objectives import elbo_terms
from ...training.batching import EVAL_SEED
from ...training.tasks import images
from ...training.tasks.base import LIKELIHOOD_SETTINGS, Settings, Task, changed_flags, one_bound, register_task, require
from ...training.tasks.report import ElboReport, Report

MI_PAIRS = 10_000  # pairs drawn from the model for the validation and test estimates
TEST_STREAM = 1    # the test estimate's pairs: a stream of their own after EVAL_SEED


def check_mae(config):
    """One stochastic layer, the Bernoulli likelihood, the ELBO alone (no IWAE, target rate, MMD or alpha)
    and a target given."""
    changed = changed_flags(config, LIKELIHOOD_SETTINGS)
    require([(len(config.layer_sizes()) == 1, "task mae has one stochastic layer: give one --latent size"),
             (not changed, "task mae draws binary images from its decoder: leave " + ", ".join(changed)
                           + " at the default (Bernoulli)"),
             (one_bound(config), "task mae adds its information term to the ELBO: use it without --iw-samples, "
                                 "--target-rate, --mmd or --alpha"),
             (config.options.mi_target is not None,
              "task mae needs the information to hold: give --mi-target M (nats)")])


class MutualReport(Report):
    """The report of a Mutual Autoencoder ``task``: the ELBO's (:class:`ElboReport`, which it holds) with the
    information estimate, and a test summary of the ELBO's rate and distortion."""
    health_name, health_label = ElboReport.health_name, ElboReport.health_label
    score_label = ElboReport.score_label

    def __init__(self, task):
        super().__init__(task)
        self.elbo = ElboReport(task, extra=("mi",))
        self.reported = self.elbo.reported

    def train_row(self, means):
        """The ELBO's numbers and ``train_mi``, the mean of the steps' estimates (nats)."""
        return self.elbo.train_row(means)

    def information(self, params, stream, batch_size=500):
        """H(z) + mean log r(z|x') over MI_PAIRS pairs drawn from the model with ``generator(device,
        stream)``: a host float (nats)."""
        rng, model = generator(self.task.device, stream), self.task.model
        total = 0.0  # a device scalar after the first batch: one read at the end
        for lo in range(0, MI_PAIRS, batch_size):
            n = min(batch_size, MI_PAIRS - lo)
            z = rng.standard_normal((n, model.sizes[0]), dtype=model.dtype)
            u = rng.random((n, model.n_in), dtype=model.dtype)
            total = total + information(model, generated_terms(model, params, z, u)[0]).astype(np.float64) * n
        return float(to_host(total)) / MI_PAIRS

    def validate(self, params, valid):
        """``valid_elbo`` and ``valid_mi`` (the estimate over MI_PAIRS pairs drawn with EVAL_SEED)."""
        return {**self.elbo.validate(params, valid), "valid_mi": self.information(params, EVAL_SEED)}

    def test_summary(self, params, test, best_valid):
        """The test ELBO from its rate and distortion (one pass over the test images, one draw each with the
        noise of EVAL_SEED, one read), the estimate over MI_PAIRS fresh pairs, the target and the best
        validation ELBO."""
        task, (x,) = self.task, test
        rng, model = generator(task.device, EVAL_SEED), task.model
        sums = array_module(x).zeros(2, dtype=np.float64)  # log p(x|z), KL: summed on the device
        for lo in range(0, len(x), 500):
            xb = x[lo:lo + 500]
            eps = rng.standard_normal((1, len(xb), model.noise_size), dtype=model.dtype)
            rec, kl = elbo_terms(model, params, xb, eps, task.config.kl)
            sums[0] += rec.astype(np.float64).sum()
            sums[1] += kl.astype(np.float64).sum()
        rec, rate = (to_host(sums) / len(x)).tolist()
        return {"task": task.name, "test_elbo": rec - rate, "best_valid_elbo": best_valid, "test_rate": rate,
                "test_distortion": -rec, "test_mi": self.information(params, (EVAL_SEED, TEST_STREAM)),
                "mi_target": task.config.options.mi_target}

    def epoch_line(self, row):
        return f"{self.elbo.epoch_line(row)}  information {row['valid_mi']:.2f} nats"

    def result_line(self, summary):
        return (f"{self.elbo.result_line(summary)}, rate {summary['test_rate']:.2f}, distortion "
                f"{summary['test_distortion']:.2f}, information {summary['test_mi']:.2f} nats "
                f"(target {summary['mi_target']:g})")


@register_task("mae")
class Mutual(Task):
    """The Mutual Autoencoder: the loss is :func:`mutual_loss` with the run's target and weight."""
    settings = Settings(about="the Mutual Autoencoder (Phuong et al. 2018): a VAE whose generative model is held at "
                              "the mutual information --mi-target between x and z, estimated by the infomax bound "
                              "with a network r(z|x)", Options=MutualOptions, binarizes=True, check=check_mae)
    loss = staticmethod(mutual_loss)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    report = functools.cached_property(MutualReport)

    @staticmethod
    def build_model(config, n_in):
        return MutualAutoencoder(n_in, config.latent, config.layer_hidden()[0], config.activation, config.posterior,
                                 np.dtype(config.dtype), {"grid_shape": config.layer_grid_shapes()[0]}, config.init)

    def step_args(self, batch, rng, kl_weight):
        """The posterior's noise (S samples per image), then the B pairs' z ~ N(0, I) and uniforms, from
        ``rng`` in that order."""
        cfg, model = self.config, self.model
        (x,) = batch
        eps = rng.standard_normal((cfg.samples, len(x), model.noise_size), dtype=model.dtype)
        z = rng.standard_normal((len(x), model.sizes[0]), dtype=model.dtype)
        u = rng.random((len(x), model.n_in), dtype=model.dtype)
        return self.step_inputs(x=x, eps=eps, z=z, u=u, kl=cfg.kl, kl_weight=kl_weight, target=cfg.options.mi_target,
                                weight=cfg.options.mi_weight)

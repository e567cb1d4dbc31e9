"""The task ``sbn``: a VAE with one layer of binary latent units (:mod:`gvae.models.binary.model`; a sigmoid belief
network's layer with an amortised encoder), trained by a score-function gradient (``--estimator``): on the
multi-sample bound L_K (K = ``--iw-samples``, 2 or more) with VIMCO's leave-one-out signals, or on the
ELBO with NVIL's learned baseline or DARN's Taylor signals.

Data and batches are those of the task ``generate`` (:mod:`gvae.training.tasks.images`). Validation and test
give the ELBO (L_1, one sample a point, noise of EVAL_SEED); the test summary adds ``test_log_px``, L_1000
on the first 1,000 test images (:func:`gvae.training.tasks.report.weights_log_px`).

The pieces that the tasks of binary units (sbn, darn, sbndef, poissondef) share are functions here: their
settings (:func:`binary_settings`), step (:func:`binary_step_args`), report (:func:`binary_report`) and
reading (:func:`binary_reading`)."""
import functools

import numpy as np

from .model import BinaryVAE, binary_loss
from .options import BinaryOptions
from ...training.tasks import images
from ...training.tasks.base import Settings, Task, changed_flags, register_task, require
from ...training.tasks.reading import Reading, read_by_weights
from ...training.tasks.report import ElboReport, weights_elbo
from ...training.validation import LOG_PX_SAMPLES

ESTIMATORS = ("vimco", "nvil", "taylor")  # the --estimator choices of binary units


def uniform(rng, shape, dtype):
    """The noise of a binary layer's pass: uniforms on [0, 1)."""
    return rng.random(shape, dtype=dtype)


def check_binary_units(config, one_layer=True, estimators=ESTIMATORS):
    """One layer (where ``one_layer``); an estimator of ``estimators``; K = iw_samples >= 2 with VIMCO (the
    leave-one-out baseline), 1 with NVIL and Taylor; the bound alone (no target rate, MMD, alpha, beta or
    warm-up); no Gaussian posterior's settings (family, lattice, KL estimator, samples)."""
    changed = changed_flags(config, ("posterior", "grid_shape", "kl", "samples", "beta", "warmup", "inference",
                                     "merge"))
    task = f"task {config.task}"
    require([(len(config.layer_sizes()) == 1 or not one_layer,
              f"{task} has one stochastic layer: give one --latent size"),
             (config.options.estimator in estimators, f"{task} trains with --estimator "
                                                      + " or ".join(estimators) + f", not {config.options.estimator}"),
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


def binary_settings(about, one_layer=True, estimators=ESTIMATORS, binarizes=True):
    """The settings of a task of binary units: :class:`BinaryOptions`, no posterior family (the codes' posterior
    is the task's own, whatever --posterior says), :func:`check_binary_units` with ``one_layer`` and
    ``estimators``."""
    return Settings(about=about, Options=BinaryOptions, binarizes=binarizes, posterior_family=False,
                    check=functools.partial(check_binary_units, one_layer=one_layer, estimators=estimators))


def binary_vae(config, n_in, autoregressive=False):
    """The one-layer :class:`BinaryVAE` of ``config`` for inputs of ``n_in`` units (DARN's layer with
    ``autoregressive``)."""
    return BinaryVAE(n_in, config.latent, config.layer_hidden()[0], config.activation, config.likelihood,
                     np.dtype(config.dtype), images.likelihood_options(config), config.init,
                     baseline=config.options.estimator == "nvil", autoregressive=autoregressive)


def binary_step_args(task, batch, rng, kl_weight):
    """The step of binary units: K = ``iw_samples`` uniforms per latent unit and image, from ``rng``, and the
    estimator (a task's ``step_args``)."""
    (x,) = batch
    model = task.model
    return task.step_inputs(x=x, u=uniform(rng, (task.config.iw_samples, len(x), model.noise_size), model.dtype),
                            estimator=task.config.options.estimator)


def weight_terms(model, params, x, u):
    """log p(x|z) and log p(z) - log q(z|x) of the draws of the uniforms u (K, B, latent): the model's own
    ``log_weights`` but log q, which the losses use too."""
    return model.log_weights(params, x, u)[:2]


def binary_reading(task, what):
    """How a run of binary units is read: by its log-weights (:func:`weight_terms`) with uniforms as the
    noise, its model drawing from its prior; ``what`` the runs hold ("a DARN (--task darn)")."""
    return Reading(task, cannot_open=read_by_weights(what), terms=weight_terms, noise=uniform, draws_prior=True)


def binary_report(task):
    """The report of binary units: the ELBO's (:class:`ElboReport`), the bound of one draw a point by the
    task's log-weights, and the summary's L_1000."""
    return ElboReport(task, weights_elbo, log_px=LOG_PX_SAMPLES)


@register_task("sbn")
class Binary(Task):
    """The binary-latent VAE: the loss is :func:`binary_loss` of the run's estimator."""
    settings = binary_settings(
        "a VAE with one layer of binary latent units (a sigmoid belief network's) and a learned Bernoulli prior, "
        "trained by a score-function gradient: --estimator vimco (the bound over --iw-samples K >= 2, Mnih and "
        "Rezende 2016), nvil (the ELBO with a learned baseline, Mnih and Gregor 2014) or taylor (the ELBO with "
        "DARN's first-order Taylor signals, Gregor et al. 2014)")
    loss = staticmethod(binary_loss)
    build_model = staticmethod(binary_vae)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    step_args = binary_step_args
    report = functools.cached_property(binary_report)

    @functools.cached_property
    def reading(self):
        return binary_reading(self, "a VAE with binary latent units (--task sbn)")

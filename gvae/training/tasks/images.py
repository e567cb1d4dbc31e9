"""A VAE of the images, as the task ``generate`` and most literature models build and feed it: the keyword
arguments of :class:`gvae.model.VAE` a configuration describes (:func:`vae_arguments`), the images as a
task's inputs, and the step of the VAE's objectives (:func:`vae_step_args`).

The inputs are the images alone, each split checked by the likelihood. The training images are made
observations afresh every epoch (binarised, or dequantised for a continuous likelihood:
:func:`gvae.training.batching.epoch_batches`), or with ``--binarization static`` binarised once before the
first (:func:`gvae.training.batching.static_binarization`); the validation and test images once, with
EVAL_SEED, the same for every run (:func:`gvae.training.batching.fixed_eval_sets`). A task takes them as
its own methods: ``inputs, on_device, batches = images.inputs, images.on_device, images.batches``, and
``step_args = images.vae_step_args`` where its loss is :func:`gvae.model.objectives.training_loss`."""
import numpy as np

from ...kernels import to_device
from ...model import VAE
from ..batching import epoch_batches, fixed_eval_sets, static_binarization
from .base import SPLITS, rows_on_device


def likelihood_options(config):
    """The options of ``config``'s likelihood (:func:`gvae.model.get_likelihood`)."""
    return {"gaussian": {"psi": config.psi, "squash": config.squash}, "bernoulli": {},
            "ar-bernoulli": {}}.get(config.likelihood, {"factor": config.pixel_factor, "squash": config.squash})


def vae_arguments(config, n_in):
    """The keyword arguments of :class:`gvae.model.VAE` that ``config`` describes for inputs of ``n_in`` units."""
    lik_options = likelihood_options(config)
    return dict(n_in=n_in, latent=config.layer_sizes(), hidden=config.layer_hidden(), activation=config.activation,
                posterior=config.layer_posteriors(), likelihood=config.likelihood, dtype=np.dtype(config.dtype),
                posterior_options=[{"grid_shape": shape} for shape in config.layer_grid_shapes()],
                likelihood_options=lik_options, inference=config.inference, init=config.init, merge=config.merge)


def build_vae(config, n_in):
    """The VAE (:class:`gvae.model.VAE`) ``config`` describes for inputs of ``n_in`` units."""
    return VAE(**vae_arguments(config, n_in))


def inputs(task, data):
    """The images of every split, each checked by ``task``'s likelihood (ValueError naming what it refuses);
    the training images binarised once where the run's binarisation is static."""
    for split in SPLITS:
        task.model.likelihood.check(data[split][0])
    images = {split: data[split][0] for split in SPLITS}
    if task.config.binarization == "static":
        images["train"] = static_binarization(images["train"])
    return {split: (x,) for split, x in images.items()}


def on_device(task, inputs):
    """The raw training images (made observations by each epoch), the validation and test sets as the
    fixed observations of :func:`fixed_eval_sets`, on ``task``'s device."""
    valid, test = (to_device(x, task.device) for x in fixed_eval_sets(inputs, task.model))
    return {**rows_on_device({"train": inputs["train"]}, task.model.dtype, task.device), "valid": (valid,),
            "test": (test,)}


def batches(task, train, batch_size, rng):
    """The epoch's observations of the training images, in shuffled batches (:func:`epoch_batches`)."""
    return ((x,) for x in epoch_batches(train[0], task.model.likelihood, batch_size, rng))


def vae_step_args(task, batch, rng, kl_weight):
    """The step of :func:`gvae.model.objectives.training_loss` (a task's ``step_args``): the posterior's noise
    (S or K samples per image), then, with an MMD term, as many draws of the top layer's prior N(0, I): both
    from ``rng``, in that order."""
    cfg, model = task.config, task.model
    (x,) = batch
    n_samples = cfg.iw_samples if cfg.iw_samples > 1 else cfg.samples
    eps = rng.standard_normal((n_samples, len(x), model.noise_size), dtype=model.dtype)
    mmd = None
    if cfg.mmd > 0:  # the prior's draws for the MMD, after the posterior's noise
        prior = rng.standard_normal((n_samples * len(x), model.layers[-1].size), dtype=model.dtype)
        mmd = (cfg.mmd, prior, cfg.mmd_kernel)
    return task.step_inputs(x=x, eps=eps, kl=cfg.kl, kl_weight=kl_weight, iwae=cfg.iw_samples > 1,
                            target_rate=cfg.target_rate, mmd=mmd)

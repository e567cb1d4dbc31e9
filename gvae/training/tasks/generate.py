"""The task ``generate``: a VAE of the images, trained on the variational objectives of
:mod:`gvae.model.objectives` (the ELBO, SGVB-A or -B; the beta-VAE's weighted rate with warm-up; a target
rate; InfoVAE's MMD term; the IWAE bound), validated and tested by the ELBO.

Its inputs are the images alone. The training images are made observations afresh every epoch
(binarised, or dequantised for a continuous likelihood: :func:`gvae.training.batching.epoch_batches`),
or with ``--binarization static`` binarised once before the first (:func:`static_binarization`);
the validation and test images once, with EVAL_SEED, the same for every run
(:func:`gvae.training.batching.fixed_eval_sets`). The reported numbers are the bound at weight 1, the
mean reconstruction term and the mean rate (KL, or the IWAE's -log ratio), in nats of the data in the
metrics rows."""
import numpy as np

from ..validation import bits_per_dim, dataset_elbo
from ...kernels import generator, to_device
from ...model import VAE
from ...model.objectives import training_loss
from ..batching import EVAL_SEED, epoch_batches, fixed_eval_sets, static_binarization
from .base import SPLITS, Task, register_task


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


@register_task("generate")
class Generate(Task):
    """A VAE of the images (:class:`gvae.model.VAE`): the loss is :func:`training_loss`."""
    about = "a VAE of the images"
    binarizes = True
    reported = ("bound", "rec", "kl")
    health_name, health_label = "valid_elbo", "validation ELBO"
    score_label = "validation ELBO"
    loss = staticmethod(training_loss)

    @classmethod
    def build_model(cls, config, n_in):
        return VAE(**vae_arguments(config, n_in))

    def inputs(self, data):
        """The images of every split, each checked by the likelihood (ValueError naming what it refuses); the
        training images binarised once where the run's binarisation is static."""
        for split in SPLITS:
            self.model.likelihood.check(data[split][0])
        images = {split: data[split][0] for split in SPLITS}
        if self.config.binarization == "static":
            images["train"] = static_binarization(images["train"])
        return {split: (x,) for split, x in images.items()}

    def on_device(self, inputs):
        """The raw training images (made observations by each epoch), the validation and test sets as the
        fixed observations of :func:`fixed_eval_sets`."""
        valid, test = (to_device(x, self.device) for x in fixed_eval_sets(inputs, self.model))
        return {**super().on_device({"train": inputs["train"]}), "valid": (valid,), "test": (test,)}

    def batches(self, train, batch_size, rng):
        """The epoch's observations of the training images, in shuffled batches (:func:`epoch_batches`)."""
        return ((x,) for x in epoch_batches(train[0], self.model.likelihood, batch_size, rng))

    def step_args(self, batch, rng, kl_weight):
        """The posterior's noise (S or K samples per image), then, with an MMD term, as many draws of the top
        layer's prior N(0, I): both from ``rng``, in that order."""
        cfg, model = self.config, self.model
        (x,) = batch
        n_samples = cfg.iw_samples if cfg.iw_samples > 1 else cfg.samples
        eps = rng.standard_normal((n_samples, len(x), model.noise_size), dtype=model.dtype)
        mmd = None
        if cfg.mmd > 0:  # the prior's draws for the MMD, after the posterior's noise
            prior = rng.standard_normal((n_samples * len(x), model.layers[-1].size), dtype=model.dtype)
            mmd = (cfg.mmd, prior, cfg.mmd_kernel)
        return self.step_inputs(x=x, eps=eps, kl=cfg.kl, kl_weight=kl_weight, iwae=cfg.iw_samples > 1,
                                target_rate=cfg.target_rate, mmd=mmd)

    def train_row(self, means):
        """``train_elbo`` (rec - kl), ``train_bound``, ``train_rec``, ``train_kl``, in nats of the data."""
        bound, rec, kl = means
        offset = self.model.likelihood.nats_offset()  # nats of the 8-bit data for continuous likelihoods
        bound, rec = bound + offset, rec + offset
        return {"train_elbo": rec - kl, "train_bound": bound, "train_rec": rec, "train_kl": kl}

    def validate(self, params, valid):
        """``valid_elbo``: the mean validation ELBO (nats per image)."""
        return {"valid_elbo": self.elbo(params, valid[0])}

    def test_summary(self, params, test, best_valid):
        """``test_elbo`` (with bits per dimension for a continuous likelihood) and ``best_valid_elbo``."""
        elbo = self.elbo(params, test[0])
        return {"test_elbo": elbo, **bits_per_dim(self.model, {"test_elbo": elbo}), "best_valid_elbo": best_valid}

    def elbo(self, params, x):
        """The mean ELBO of the observations x (nats per image), with the noise of EVAL_SEED."""
        return dataset_elbo(self.model, params, x, generator(self.device, EVAL_SEED), kl=self.config.kl)

    def epoch_line(self, row):
        return f"train bound {row['train_bound']:.3f}  valid ELBO {row['valid_elbo']:.3f} nats/image"

    def result_line(self, summary):
        return (f"test ELBO {summary['test_elbo']:.3f} nats (all {summary['n_test']:,} test images, one draw of z "
                f"each, the {summary['test_params']} epoch's parameters)")

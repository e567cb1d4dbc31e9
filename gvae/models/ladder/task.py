"""The task ``vlae``: the variational ladder autoencoder (:mod:`gvae.models.ladder.model`; Zhao, Song, Ermon 2017),
codes at several depths of one generative network, trained on the objectives of the task ``generate``
(the ELBO, beta, warm-up, the IWAE bound, ...), which score any model of the objectives' interface.

Data, batches, validation and the best epoch are those of ``generate``. The test summary adds an
importance-sampled estimate of log p(x): the IWAE bound L_K with K = 1,000 samples of q on the first 1,000
test images (:func:`gvae.training.validation.log_px_estimate`), the estimate ``gvae eval --iw-samples 1000
--limit 1000`` gives a VAE. Its runs are read as a VAE's: ``gvae eval`` estimates log p(x) on the whole test
set by the same log-weights in the VAE's blocks; ``gvae sample`` and ``plot`` draw codes of every layer from
the prior and decode them all; ``gvae analyze`` refines every layer's posterior for the gaps and takes each
code's ELBO surgery (each q(z_l | x) is of x alone, each prior N(0, I))."""
from ...kernels import generator
from .model import VLAE
from ...model.objectives import log_weights
from ...training.batching import EVAL_SEED
from ...training.validation import log_px_summary
from ...training.tasks.base import changed_flags, register_task, require
from ...training.tasks.generate import Generate, vae_arguments


@register_task("vlae")
class Ladder(Generate):
    """The VLAE, trained on :func:`gvae.model.objectives.training_loss` as the VAE is."""
    about = ("the variational ladder autoencoder (Zhao et al. 2017): one code per --latent size, each inferred "
             "from features of its own depth and injected at that depth of one generative network")

    @classmethod
    def check_config(cls, config):
        """Every layer with hidden widths (its features feed the deeper codes); the inference order and
        merge of a hierarchy's posterior do not apply (each code is inferred from its features alone)."""
        changed = changed_flags(config, ("inference", "merge"))
        require([(all(config.layer_hidden()), "task vlae needs hidden widths for every layer: give --hidden"),
                 (not changed, "task vlae infers each code from the features of its depth: leave "
                               + ", ".join(changed) + " at the default")])

    @classmethod
    def build_model(cls, config, n_in):
        arguments = vae_arguments(config, n_in)
        for name in ("inference", "merge"):
            del arguments[name]
        return VLAE(**arguments)

    def log_weights(self, params):
        """(x (B, n), noise (K, B, noise_size)) -> log p(x, z_1..z_L) - log q(z_1..z_L|x) of the K draws (K, B), as
        the IWAE bound sums them (:func:`gvae.model.objectives.log_weights`)."""
        return lambda x, noise: sum(log_weights(self.model, params, x, noise))

    def test_summary(self, params, test, best_valid):
        """The generate task's numbers and ``test_log_px`` (:func:`log_px_summary`, noise from EVAL_SEED),
        with ``log_px_samples`` and ``log_px_images``."""
        model = self.model
        estimate = log_px_summary(self.log_weights(params), model, test[0], generator(self.device, EVAL_SEED))
        return {"task": self.name, **super().test_summary(params, test, best_valid), **estimate}

    def result_line(self, summary):
        return (f"{super().result_line(summary)}, log p(x) ~ {summary['test_log_px']:.3f} (L_{summary['log_px_samples']}"
                f", first {summary['log_px_images']} test images)")

"""The task ``vlae``: the variational ladder autoencoder (:mod:`gvae.models.ladder.model`; Zhao, Song, Ermon 2017),
codes at several depths of one generative network, trained on the objectives of the task ``generate``
(the ELBO, beta, warm-up, the IWAE bound, ...), which score any model of the objectives' interface.

Data, batches, validation and the best epoch are those of ``generate``. The test summary adds an
importance-sampled estimate of log p(x): the IWAE bound L_K with K = 1,000 samples of q on the first 1,000
test images (:func:`gvae.training.tasks.report.weights_log_px`), the estimate ``gvae eval --iw-samples 1000
--limit 1000`` gives a VAE. Its runs are read as a VAE's: ``gvae eval`` estimates log p(x) on the whole test
set by the same log-weights in the VAE's blocks; ``gvae sample`` and ``plot`` draw codes of every layer from
the prior and decode them all; ``gvae analyze`` refines every layer's posterior for the gaps and takes each
code's ELBO surgery (each q(z_l | x) is of x alone, each prior N(0, I))."""
import functools

from .model import VLAE
from ...model.objectives import log_weights, training_loss
from ...training.tasks import images
from ...training.tasks.base import Settings, Task, changed_flags, register_task, require
from ...training.tasks.reading import Reading
from ...training.tasks.report import ElboReport
from ...training.validation import LOG_PX_SAMPLES


def check_vlae(config):
    """Every layer with hidden widths (its features feed the deeper codes); the inference order and merge of
    a hierarchy's posterior do not apply (each code is inferred from its features alone)."""
    changed = changed_flags(config, ("inference", "merge"))
    require([(all(config.layer_hidden()), "task vlae needs hidden widths for every layer: give --hidden"),
             (not changed, "task vlae infers each code from the features of its depth: leave "
                           + ", ".join(changed) + " at the default")])


@register_task("vlae")
class Ladder(Task):
    """The VLAE, trained on :func:`gvae.model.objectives.training_loss` as the VAE is."""
    settings = Settings(about="the variational ladder autoencoder (Zhao et al. 2017): one code per --latent size, "
                              "each inferred from features of its own depth and injected at that depth of one "
                              "generative network", binarizes=True, check=check_vlae)
    loss = staticmethod(training_loss)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    step_args = images.vae_step_args

    @staticmethod
    def build_model(config, n_in):
        arguments = images.vae_arguments(config, n_in)
        for name in ("inference", "merge"):
            del arguments[name]
        return VLAE(**arguments)

    @functools.cached_property
    def report(self):
        """The ELBO's, and the summary's L_1000 by the log-weights of the IWAE bound."""
        return ElboReport(self, log_px=LOG_PX_SAMPLES)

    @functools.cached_property
    def reading(self):
        """As a VAE's, with the log-weights log p(x, z_1..z_L) - log q(z_1..z_L|x) of the draws, as the IWAE
        bound sums them (:func:`gvae.model.objectives.log_weights`), for the summary's log p(x)."""
        return Reading(self, terms=log_weights)

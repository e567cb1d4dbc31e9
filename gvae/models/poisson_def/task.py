"""The task ``poissondef``: the Poisson deep exponential family (:mod:`gvae.models.poisson_def.model`; Ranganath et
al. 2015) on MNIST's pixel intensities as counts (0..255, the same every epoch), count layers of
``--latent`` sizes (bottom first) and a mean-field amortised encoder, trained by VIMCO (the bound over
``--iw-samples`` K >= 2) or NVIL. Validation and the test summary (the ELBO and L_1000) are those of ``sbn``,
in nats of the counts."""
import numpy as np

from .model import PixelCounts, PoissonDEF
from ...training.tasks.base import SPLITS, Task, read_by_weights, register_task
from ..sigmoid_belief.task import SigmoidBeliefDef


@register_task("poissondef")
class PoissonDef(SigmoidBeliefDef):
    """The Poisson DEF: :class:`Binary`'s losses on :class:`PoissonDEF`, its counts as the data."""
    about = ("the Poisson deep exponential family (Ranganath et al. 2015): count layers, each the Poisson rate of "
             "the one below, on MNIST's intensities as counts, trained with --estimator vimco (--iw-samples K >= 2) "
             "or nvil")
    cannot_open = read_by_weights("a Poisson DEF (--task poissondef)")
    binarizes = False  # (its data are counts)

    @classmethod
    def build_model(cls, config, n_in):
        return PoissonDEF(n_in, config.layer_sizes(), config.layer_hidden()[0], config.activation,
                          np.dtype(config.dtype), config.init, baseline=config.options.estimator == "nvil")

    def inputs(self, data):
        """Every split's images as counts (:meth:`PixelCounts.counts`; ValueError outside [0, 1])."""
        return {split: (PixelCounts.counts(data[split][0]),) for split in SPLITS}

    def on_device(self, inputs):
        """The counts of every split as they are (no binarisation, no fixed draw): contiguous arrays of the
        model's dtype on the device."""
        return Task.on_device(self, inputs)

    def batches(self, train, batch_size, rng):
        """Every image's counts once, in shuffled batches."""
        return Task.batches(self, train, batch_size, rng)

"""The task ``poissondef``: the Poisson deep exponential family (:mod:`gvae.models.poisson_def.model`; Ranganath et
al. 2015) on MNIST's pixel intensities as counts (0..255, the same every epoch), count layers of
``--latent`` sizes (bottom first) and a mean-field amortised encoder, trained by VIMCO (the bound over
``--iw-samples`` K >= 2) or NVIL. Validation and the test summary (the ELBO and L_1000) are those of ``sbn``
(the binary units' pieces of :mod:`gvae.models.binary.task`), in nats of the counts."""
import functools

import numpy as np

from .model import PixelCounts, PoissonDEF
from ..binary.model import binary_loss
from ..binary.task import binary_reading, binary_report, binary_settings, binary_step_args
from ...training.tasks.base import SPLITS, Task, register_task


@register_task("poissondef")
class PoissonDef(Task):
    """The Poisson DEF: the binary units' losses (:func:`binary_loss`) on :class:`PoissonDEF`, its counts as the
    data, every image's counts once an epoch in shuffled batches (the task's default ``on_device`` and
    ``batches``: no binarisation, no fixed draw)."""
    settings = binary_settings(
        "the Poisson deep exponential family (Ranganath et al. 2015): count layers, each the Poisson rate of "
        "the one below, on MNIST's intensities as counts, trained with --estimator vimco (--iw-samples K >= 2) "
        "or nvil", one_layer=False, estimators=("vimco", "nvil"), binarizes=False)
    loss = staticmethod(binary_loss)
    step_args = binary_step_args
    report = functools.cached_property(binary_report)

    @staticmethod
    def build_model(config, n_in):
        return PoissonDEF(n_in, config.layer_sizes(), config.layer_hidden()[0], config.activation,
                          np.dtype(config.dtype), config.init, baseline=config.options.estimator == "nvil")

    def inputs(self, data):
        """Every split's images as counts (:meth:`PixelCounts.counts`; ValueError outside [0, 1])."""
        return {split: (PixelCounts.counts(data[split][0]),) for split in SPLITS}

    @functools.cached_property
    def reading(self):
        return binary_reading(self, "a Poisson DEF (--task poissondef)")

"""The task ``sbndef``: the sigmoid belief network deep exponential family (:mod:`gvae.models.sigmoid_belief.model`;
Ranganath et al. 2015), binary layers of ``--latent`` sizes (bottom first) with linear-logistic connections
and a bottom-up amortised encoder, trained by VIMCO (the bound over ``--iw-samples`` K >= 2) or NVIL (the ELBO
with a learned baseline). Data, validation and the test summary (the ELBO and L_1000) are those of ``sbn``
(the binary units' pieces of :mod:`gvae.models.binary.task`)."""
import functools

import numpy as np

from .model import SigmoidBeliefDEF
from ..binary.model import binary_loss
from ..binary.task import binary_reading, binary_report, binary_settings, binary_step_args
from ...training.tasks import images
from ...training.tasks.base import Task, register_task


@register_task("sbndef")
class SigmoidBeliefDef(Task):
    """The sigmoid belief network DEF: the binary units' losses (:func:`binary_loss`) on :class:`SigmoidBeliefDEF`."""
    settings = binary_settings(
        "the sigmoid belief network deep exponential family (Ranganath et al. 2015): binary layers, each "
        "layer's logits linear in the one above, a bottom-up amortised encoder, trained with --estimator vimco "
        "(--iw-samples K >= 2) or nvil", one_layer=False, estimators=("vimco", "nvil"))
    loss = staticmethod(binary_loss)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    step_args = binary_step_args
    report = functools.cached_property(binary_report)

    @staticmethod
    def build_model(config, n_in):
        return SigmoidBeliefDEF(n_in, config.layer_sizes(), config.layer_hidden()[0], config.activation,
                                np.dtype(config.dtype), config.init, baseline=config.options.estimator == "nvil")

    @functools.cached_property
    def reading(self):
        return binary_reading(self, "a sigmoid belief network DEF (--task sbndef)")

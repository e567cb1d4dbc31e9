"""The task ``sbndef``: the sigmoid belief network deep exponential family (:mod:`gvae.models.sigmoid_belief.model`;
Ranganath et al. 2015), binary layers of ``--latent`` sizes (bottom first) with linear-logistic connections
and a bottom-up amortised encoder, trained by VIMCO (the bound over ``--iw-samples`` K >= 2) or NVIL (the ELBO
with a learned baseline). Data, validation and the test summary (the ELBO and L_1000) are those of ``sbn``."""
import numpy as np

from .model import SigmoidBeliefDEF
from ...training.tasks.base import read_by_weights, register_task
from ..binary.task import Binary


@register_task("sbndef")
class SigmoidBeliefDef(Binary):
    """The sigmoid belief network DEF: :class:`Binary`'s losses on :class:`SigmoidBeliefDEF`."""
    about = ("the sigmoid belief network deep exponential family (Ranganath et al. 2015): binary layers, each "
             "layer's logits linear in the one above, a bottom-up amortised encoder, trained with --estimator vimco "
             "(--iw-samples K >= 2) or nvil")
    cannot_open = read_by_weights("a sigmoid belief network DEF (--task sbndef)")
    one_layer = False
    estimators = ("vimco", "nvil")

    @classmethod
    def build_model(cls, config, n_in):
        return SigmoidBeliefDEF(n_in, config.layer_sizes(), config.layer_hidden()[0], config.activation,
                                np.dtype(config.dtype), config.init, baseline=config.options.estimator == "nvil")

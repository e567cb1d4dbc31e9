"""The task ``darn``: DARN (Gregor et al., "Deep AutoRegressive Networks", 2014), the binary-latent VAE of
the task ``sbn`` with an autoregressive encoder and prior (:class:`gvae.models.binary.model.BinaryVAE` with
``autoregressive``): each unit's logit reads the units before it, drawn in order by
:func:`gvae.kernels.ar_bernoulli_draw` and scored in one masked product. Several ``--latent`` sizes give the
deeper variant, layers of such units each conditioned on its neighbour (:class:`gvae.models.darn.model.DeepDARN`).
The same estimators (``--estimator vimco``, ``nvil`` or ``taylor``, DARN's own), data, validation and test
summary as ``sbn``."""
import numpy as np

from .model import DeepDARN
from ...training.tasks.base import read_by_weights, register_task
from ..binary.task import Binary
from ...training.tasks.generate import likelihood_options


@register_task("darn")
class Darn(Binary):
    """DARN: :class:`Binary` with the autoregressive layer, or layers."""
    about = ("DARN (Gregor et al. 2014): task sbn's binary latent units with an autoregressive encoder and prior "
             "(each unit reads the units before it; several --latent sizes stack such layers, bottom first), "
             "trained with --estimator vimco, nvil or taylor (DARN's first-order Taylor signals)")
    cannot_open = read_by_weights("a DARN (--task darn)")
    autoregressive = True
    one_layer = False

    @classmethod
    def build_model(cls, config, n_in):
        sizes = config.layer_sizes()
        if len(sizes) == 1:
            return super().build_model(config, n_in)
        return DeepDARN(n_in, sizes, config.layer_hidden()[0], config.activation, config.likelihood,
                        np.dtype(config.dtype), likelihood_options(config), config.init,
                        baseline=config.options.estimator == "nvil")

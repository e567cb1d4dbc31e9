"""The task ``darn``: DARN (Gregor et al., "Deep AutoRegressive Networks", 2014), the binary-latent VAE of
the task ``sbn`` with an autoregressive encoder and prior (:class:`gvae.models.binary.model.BinaryVAE` with
``autoregressive``): each unit's logit reads the units before it, drawn in order by
:func:`gvae.kernels.ar_bernoulli_draw` and scored in one masked product. Several ``--latent`` sizes give the
deeper variant, layers of such units each conditioned on its neighbour (:class:`gvae.models.darn.model.DeepDARN`).
The same estimators (``--estimator vimco``, ``nvil`` or ``taylor``, DARN's own), data, validation and test
summary as ``sbn`` (the binary units' pieces of :mod:`gvae.models.binary.task`)."""
import functools

import numpy as np

from .model import DeepDARN
from ..binary.model import binary_loss
from ..binary.task import binary_reading, binary_report, binary_settings, binary_step_args, binary_vae
from ...training.tasks import images
from ...training.tasks.base import Task, register_task


@register_task("darn")
class Darn(Task):
    """DARN: binary units with the autoregressive layer, or layers; the loss is :func:`binary_loss`."""
    settings = binary_settings(
        "DARN (Gregor et al. 2014): task sbn's binary latent units with an autoregressive encoder and prior "
        "(each unit reads the units before it; several --latent sizes stack such layers, bottom first), "
        "trained with --estimator vimco, nvil or taylor (DARN's first-order Taylor signals)", one_layer=False)
    loss = staticmethod(binary_loss)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    step_args = binary_step_args
    report = functools.cached_property(binary_report)

    @staticmethod
    def build_model(config, n_in):
        sizes = config.layer_sizes()
        if len(sizes) == 1:
            return binary_vae(config, n_in, autoregressive=True)
        return DeepDARN(n_in, sizes, config.layer_hidden()[0], config.activation, config.likelihood,
                        np.dtype(config.dtype), images.likelihood_options(config), config.init,
                        baseline=config.options.estimator == "nvil")

    @functools.cached_property
    def reading(self):
        return binary_reading(self, "a DARN (--task darn)")

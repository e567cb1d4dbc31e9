"""The task ``generate``: a VAE of the images, trained on the variational objectives of
:mod:`gvae.model.objectives` (the ELBO, SGVB-A or -B; the beta-VAE's weighted rate with warm-up; a target
rate; InfoVAE's MMD term; the IWAE bound), validated and tested by the ELBO.

Its inputs are the images alone (:mod:`.images`: the training images made observations afresh every
epoch, the validation and test images once with EVAL_SEED). The reported numbers are the bound at weight
1, the mean reconstruction term and the mean rate (KL, or the IWAE's -log ratio), in nats of the data in
the metrics rows (:class:`.report.ElboReport`)."""
import functools

from ...model.objectives import training_loss
from . import images
from .base import Settings, Task, register_task
from .report import ElboReport


@register_task("generate")
class Generate(Task):
    """A VAE of the images (:class:`gvae.model.VAE`): the loss is :func:`training_loss`."""
    settings = Settings(about="a VAE of the images", binarizes=True)
    loss = staticmethod(training_loss)
    build_model = staticmethod(images.build_vae)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    step_args = images.vae_step_args

    @functools.cached_property
    def report(self):
        """The ELBO's, without the task's name in the summary (runs of generate were summarised so before
        there were other tasks)."""
        return ElboReport(self, named=False)

"""The task ``darn``: DARN (Gregor et al., "Deep AutoRegressive Networks", 2014), the binary-latent VAE of
the task ``sbn`` with an autoregressive encoder and prior (:class:`gvae.model.binary.BinaryVAE` with
``autoregressive``): each unit's logit reads the units before it, drawn in order by
:func:`gvae.kernels.ar_bernoulli_draw` and scored in one masked product. The same estimators
(``--estimator vimco``, ``nvil`` or ``taylor``, DARN's own), data, validation and test summary as ``sbn``."""
from .base import register_task
from .binary import Binary


@register_task("darn")
class Darn(Binary):
    """DARN: :class:`Binary` with the autoregressive layer."""
    about = ("DARN (Gregor et al. 2014): task sbn's binary latent units with an autoregressive encoder and prior "
             "(each unit reads the units before it), trained with --estimator vimco, nvil or taylor (DARN's "
             "first-order Taylor signals)")
    cannot_open = ("a DARN (--task darn), which gvae eval, sample, plot and analyze do not read: its test ELBO and "
                   "log p(x) estimate are in its summary.json")
    autoregressive = True

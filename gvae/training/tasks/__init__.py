"""What a run trains: a :class:`Task` per ``TrainConfig.task``, each in a module of its own that registers
it (:func:`register_task`). Importing this package imports every built-in task's module, so
:data:`TASKS` is complete for whoever reads it: ``generate`` (a VAE of the images, :mod:`.generate`) and
``classify`` (the deep variational information bottleneck, :mod:`.classify`), ``vcca`` (deep
variational CCA of two views, :mod:`.vcca`), ``mae`` (the Mutual Autoencoder, :mod:`.mutual`), ``fullvb``
(full variational Bayes over the decoder's weights, :mod:`.bayes`), ``vlae`` (the variational ladder
autoencoder, :mod:`.ladder`), ``hvm`` (hierarchical variational models, :mod:`.hierarchical`), ``sbn``
(binary latent units trained with score-function gradients, :mod:`.binary`), ``darn`` (the same units
autoregressive, :mod:`.darn`), ``corex`` (the total-correlation autoencoder, :mod:`.corex`), ``gammadef``
(the sparse gamma deep exponential family, :mod:`.gamma_def`), ``sbndef`` (the sigmoid belief network
DEF, :mod:`.sigmoid_belief`) and ``poissondef`` (the Poisson DEF on counts, :mod:`.poisson_def`)."""
# Each module registers its task when imported, in this order: the default task, generate, leads the
# choices of --task and the list in the message of an unknown one.
from . import generate  # noqa: F401
from . import classify  # noqa: F401
from . import vcca  # noqa: F401
from . import mutual  # noqa: F401
from . import bayes  # noqa: F401
from . import ladder  # noqa: F401
from . import hierarchical  # noqa: F401
from . import binary  # noqa: F401
from . import darn  # noqa: F401
from . import corex  # noqa: F401
from . import gamma_def  # noqa: F401
from . import sigmoid_belief  # noqa: F401
from . import poisson_def  # noqa: F401
from .base import TASKS, Task, register_task, task_class

__all__ = ["TASKS", "Task", "register_task", "task_class"]

"""Deep variational CCA (Wang et al. 2016), the task ``vcca``: two views, a shared code and private ones."""
from . import task  # noqa: F401  (registers the task)

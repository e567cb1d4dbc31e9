"""The sparse gamma deep exponential family (Ranganath et al. 2015), the task ``gammadef``."""
from . import task  # noqa: F401  (registers the task)

"""The Poisson deep exponential family (Ranganath et al. 2015) on pixel counts, the task ``poissondef``."""
from . import task  # noqa: F401  (registers the task)

"""The sigmoid belief network deep exponential family (Ranganath et al. 2015), the task ``sbndef``."""
from . import task  # noqa: F401  (registers the task)

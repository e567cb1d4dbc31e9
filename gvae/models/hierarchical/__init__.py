"""Hierarchical variational models (Ranganath et al. 2016), the task ``hvm``."""
from . import task  # noqa: F401  (registers the task)

"""The variational ladder autoencoder (Zhao et al. 2017), the task ``vlae``."""
from . import task  # noqa: F401  (registers the task)

"""The total-correlation (CorEx) autoencoder (Gao et al. 2019), the task ``corex``."""
from . import task  # noqa: F401  (registers the task)

"""The Mutual Autoencoder (Phuong et al. 2018), the task ``mae``."""
from . import task  # noqa: F401  (registers the task)

"""A VAE with one layer of binary latent units trained by score-function gradients, the task ``sbn``."""
from . import task  # noqa: F401  (registers the task)

"""The deep variational information bottleneck (Alemi et al. 2017), the task ``classify``."""
from . import task  # noqa: F401  (registers the task)

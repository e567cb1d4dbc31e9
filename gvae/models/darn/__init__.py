"""DARN (Gregor et al. 2014), autoregressive binary units, one layer or several, the task ``darn``."""
from . import task  # noqa: F401  (registers the task)

"""Full variational Bayes over the decoder's weights (AEVB's appendix), the task ``fullvb``."""
from . import task  # noqa: F401  (registers the task)

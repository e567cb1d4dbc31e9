"""``gvae.posteriors`` is :mod:`gvae.model.posteriors` (docs/reference/api.md, section 4), importable by the short
name too: ``import gvae.posteriors`` binds the same module object, so ``FAMILIES`` and the classes are
the same objects under either name."""
import sys

from .model import posteriors

sys.modules[__name__] = posteriors

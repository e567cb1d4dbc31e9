"""gvae from Pyro (docs/howto/structured_guides.md): :class:`AutoBandedNormal`, an autoguide with a banded
precision over the model's latent vector, and :class:`BandedNormal`, its posterior. Needs Pyro
(``pip install gvae[pyro]``); importing :mod:`gvae` alone does not import it."""
from .distribution import BandedNormal
from .guide import AutoBandedNormal

__all__ = ["AutoBandedNormal", "BandedNormal"]

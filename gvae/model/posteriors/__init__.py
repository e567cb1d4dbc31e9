"""Gaussian posterior families q(z|x), by name (docs/reference/api.md, section 4)."""
from .ar1 import AR1, AR1Params
from .banded import Banded, BandedParams, Chain, ExtGrid, Full, Grid, dense_factor
from .base import Family, PosteriorParams
from .diagonal import Diagonal, DiagonalParams
from .rank1 import Rank1, Rank1Params

FAMILIES = {cls.name: cls for cls in (Diagonal, AR1, Rank1, Chain, Grid, ExtGrid, Full)}


def get_family(name, **options):
    """An instance of the family called ``name`` (options: ``floor``, ``grid_shape`` for lattices)."""
    try:
        cls = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown posterior family {name!r}; expected one of {sorted(FAMILIES)}") from None
    return cls(**options)


__all__ = ["FAMILIES", "Family", "Banded", "get_family", "dense_factor", "PosteriorParams", "DiagonalParams",
           "BandedParams", "AR1Params", "Rank1Params"]

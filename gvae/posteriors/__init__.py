"""Gaussian posterior families q(z|x), by name (contract section 4)."""
from .base import Family
from .diagonal import Diagonal

FAMILIES = {cls.name: cls for cls in (Diagonal,)}


def get_family(name, **options):
    """An instance of the family called ``name``."""
    try:
        cls = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown posterior family {name!r}; expected one of {sorted(FAMILIES)}") from None
    return cls(**options)


__all__ = ["FAMILIES", "Family", "get_family"]

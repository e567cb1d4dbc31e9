"""Where an AutoBandedNormal's band lies in a model's latent vector (shared by gvae.numpyro and gvae.pyro).

An autoguide ravels the model's latent sites, unconstrained, into one vector x of D coordinates, site
after site in the model's order. The banded guide puts the sites it covers (all of them, or those the user
names, in the user's order) first: y = x[order], y's first m coordinates the band's, the other D - m
coordinates independent of everything (their rows of the factor hold the main diagonal only). Its
precision over y is L L^T with L (D x D) lower-triangular in band storage on ``offsets``; the ``mask``
(K, D) says which band slots are free parameters, so that L keeps the stencil's shape: off-diagonals of
the uncovered rows and a lattice's wrap-around links are held at zero. :class:`PermutedBand` gives the
posterior's moments and densities in x's coordinates, for either library's distribution.
"""
from dataclasses import dataclass

import numpy as np

from .model.lattice import chain_offsets, extgrid_offsets, grid_offsets, lattice_mask
from .rules.checks import offsets_tuple

__all__ = ["BandSpec", "Layout", "PermutedBand"]

_STENCILS = "stencil must be 'chain', ('grid', rows, cols) or ('extgrid', rows, cols)"


@dataclass(frozen=True)
class Layout:
    """``order``: int64 (D,) permutation, y = x[order] (None when it is the identity); ``offsets``: the
    band's; ``mask``: bool (K, D), True where the factor's slot is a parameter (row 0 always); ``m``: the
    band's coordinates, y[:m]."""
    order: np.ndarray | None
    offsets: tuple
    mask: np.ndarray
    m: int

    @property
    def inverse(self):
        """x = y[inverse]; None with ``order``."""
        return None if self.order is None else np.argsort(self.order)


class BandSpec:
    """An AutoBandedNormal's band as its user gave it: ``offsets`` (ints, 0 first) or ``stencil`` ('chain',
    ('grid', rows, cols), ('extgrid', rows, cols)), not both (neither: the chain), over ``sites`` (names of
    latent sites, in the band's order; None: all of them, in the model's order). Checked here, in one line
    each, except what needs the model's sizes (:meth:`layout`)."""

    def __init__(self, name, offsets=None, stencil=None, sites=None):
        self.name = name
        if offsets is not None and stencil is not None:
            raise ValueError(f"{name}: give offsets or stencil, not both (got offsets={offsets!r}, "
                             f"stencil={stencil!r})")
        self.lattice = None
        if offsets is not None:
            self.offsets = offsets_tuple(name, offsets, None, None)
        elif stencil is None or stencil == "chain":
            self.offsets = chain_offsets()
        elif isinstance(stencil, tuple) and len(stencil) == 3 and stencil[0] in ("grid", "extgrid"):
            kind, rows, cols = stencil
            try:
                self.offsets = (grid_offsets if kind == "grid" else extgrid_offsets)(rows, cols)
            except ValueError as e:
                raise ValueError(f"{name}: stencil {stencil!r}: {e}") from None
            self.lattice = (rows, cols)
        else:
            raise ValueError(f"{name}: {_STENCILS}, got {stencil!r}")
        if sites is not None:
            if isinstance(sites, str) or not all(isinstance(s, str) for s in sites) or not sites:
                raise ValueError(f"{name}: sites must be a non-empty list of site names, got {sites!r}")
            if len(set(sites)) != len(sites):
                raise ValueError(f"{name}: sites names a site twice: {list(sites)!r}")
            sites = tuple(sites)
        self.sites = sites

    def layout(self, sizes):
        """The :class:`Layout` for the latent sites ``sizes`` (an ordered mapping of site name to its count of
        unconstrained coordinates, in the order the autoguide ravels them)."""
        name = self.name
        names = list(sizes)
        sites = self.sites if self.sites is not None else tuple(names)
        unknown = [s for s in sites if s not in sizes]
        if unknown:
            raise ValueError(f"{name}: sites {unknown!r} are not latent sites of the model (its latent sites: "
                             f"{names!r})")
        starts = np.cumsum([0] + [int(sizes[s]) for s in names])
        span = {s: np.arange(starts[i], starts[i + 1]) for i, s in enumerate(names)}
        band = np.concatenate([span[s] for s in sites])
        m, D = band.size, int(starts[-1])
        if self.lattice is not None and m != self.lattice[0] * self.lattice[1]:
            rows, cols = self.lattice
            raise ValueError(f"{name}: a {rows} x {cols} lattice holds {rows * cols} coordinates, the sites "
                             f"{list(sites)!r} have {m} unconstrained coordinates")
        if m < self.offsets[-1] + 1:
            raise ValueError(f"{name}: offsets {self.offsets} reach {self.offsets[-1]} back, the sites "
                             f"{list(sites)!r} have only {m} unconstrained coordinates")
        rest = np.setdiff1d(np.arange(D), band)  # the uncovered sites, in the model's order
        order = np.concatenate([band, rest]).astype(np.int64)
        mask = np.zeros((len(self.offsets), D), dtype=bool)
        mask[0] = True
        if self.lattice is not None:
            mask[:, :m] = lattice_mask(self.offsets, *self.lattice) > 0
        else:
            i = np.arange(m)
            mask[:, :m] = i[None, :] >= np.asarray(self.offsets)[:, None]
        identity = bool((order == np.arange(D)).all())
        return Layout(None if identity else order, self.offsets, mask, m)



class PermutedBand:
    """The methods of a distribution over x (*batch, D) whose ``band`` (gvae.jax's or gvae.torch's
    BandedPrecisionNormal) is over y = x[..., order] (``order`` and its ``inverse``: int (D,) arrays of the
    library, or None for the identity): densities through y, moments and matrices back in x's order."""

    def _permuted(self, x):
        """x[..., order]: from x's coordinates to the band's."""
        return x if self.order is None else x[..., self.order]

    def _unpermuted(self, y):
        """y[..., inverse]: from the band's coordinates to x's."""
        return y if self.inverse is None else y[..., self.inverse]

    def _unpermuted_matrix(self, a):
        """a[..., inverse, :][..., inverse]: a (D, D) matrix from the band's coordinates to x's."""
        return a if self.inverse is None else a[..., self.inverse, :][..., self.inverse]

    def log_prob(self, value):
        """log N(value; loc, P^-1), through the band's coordinates: (*sample, *batch)."""
        return self.band.log_prob(self._permuted(value))

    def entropy(self):
        """D (1 + log 2 pi) / 2 - log det L: ``batch_shape``."""
        return self.band.entropy()

    @property
    def mean(self):
        return self._unpermuted(self.band.mean)

    @property
    def variance(self):
        """diag(P^-1) exactly, by selected inversion: (*batch, D)."""
        return self._unpermuted(self.band.variance)

    @property
    def precision_matrix(self):
        """P as a dense (*batch, D, D) array (for small D)."""
        return self._unpermuted_matrix(self.band.precision_matrix)

    @property
    def covariance_matrix(self):
        """P^-1 as a dense (*batch, D, D) array (for small D)."""
        return self._unpermuted_matrix(self.band.covariance_matrix)

"""AutoBandedNormal: a Pyro autoguide whose precision over the model's unconstrained latent vector is
banded (a chain for a time series, a grid or extended grid for a field on a lattice).

The latent vector x (D coordinates, Pyro's AutoContinuous ravelling) has the posterior N(loc, P^-1) with
P = L L^T in the coordinates y = x[order] (:mod:`gvae.guide_layout`): L lower-triangular, banded on the
stencil's offsets over the covered sites, diagonal over the others. Parameters: ``loc`` (D,),
``factor_diag`` (D,) > 0 (softplus, as Pyro's scales), L's main diagonal, and ``factor_off`` (K - 1, D),
its other diagonals in band storage (slots the stencil leaves out are held at zero). Sampling, log-density
and entropy cost O(D K) (:class:`gvae.pyro.BandedNormal`).
"""
import math

import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroParam
from torch import nn

from ..guide_layout import BandSpec
from .distribution import BandedNormal

__all__ = ["AutoBandedNormal"]


class AutoBandedNormal(AutoContinuous):
    """``AutoBandedNormal(model, offsets=None, stencil=None, sites=None, init_loc_fn=init_to_median,
    init_scale=0.1)``: the band on ``offsets`` (ints, 0 first) or a ``stencil`` ('chain', ('grid', rows,
    cols) or ('extgrid', rows, cols); the chain when neither is given) over the latent ``sites`` named (in
    the band's order; None: every latent site, in the model's order), the other sites diagonal. Initialised
    as AutoMultivariateNormal: loc by ``init_loc_fn``, the covariance ``init_scale**2 I``."""

    def __init__(self, model, *, offsets=None, stencil=None, sites=None, init_loc_fn=init_to_median, init_scale=0.1):
        if not init_scale > 0:
            raise ValueError(f"AutoBandedNormal: init_scale must be > 0, got {init_scale!r}")
        self._init_scale = init_scale
        self._spec = BandSpec("AutoBandedNormal", offsets, stencil, sites)
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        layout = self._spec.layout({name: math.prod(shape) for name, shape in self._unconstrained_shapes.items()})
        self.loc = nn.Parameter(self._init_loc())
        self.factor_diag = PyroParam(torch.full_like(self.loc, 1 / self._init_scale), constraints.softplus_positive)
        self.factor_off = nn.Parameter(self.loc.new_zeros(len(layout.offsets) - 1, self.latent_dim))
        self._offsets = layout.offsets
        self.register_buffer("_mask", torch.as_tensor(layout.mask, device=self.loc.device))
        order = None if layout.order is None else torch.as_tensor(layout.order, device=self.loc.device)
        self.register_buffer("_order", order)

    def get_posterior(self, *args, **kwargs):
        """The guide's :class:`BandedNormal` over the unconstrained latent vector."""
        factor = torch.cat([self.factor_diag[None], self.factor_off])
        factor = torch.where(self._mask, factor, torch.zeros((), dtype=factor.dtype, device=factor.device))
        return BandedNormal(self.loc, factor, self._offsets, self._order)

    def _loc_scale(self, *args, **kwargs):
        """(loc, the marginal standard deviations), for :meth:`median` and :meth:`quantiles`."""
        return self.loc, self.get_posterior().variance.sqrt()

"""AutoBandedNormal: a NumPyro autoguide whose precision over the model's unconstrained latent vector is
banded (a chain for a time series, a grid or extended grid for a field on a lattice).

The latent vector x (D coordinates, NumPyro's AutoContinuous ravelling) has the posterior
N(loc, P^-1) with P = L L^T in the coordinates y = x[order] (:mod:`gvae.guide_layout`): L lower-triangular,
banded on the stencil's offsets over the covered sites, diagonal over the others. Parameters:
``{prefix}_loc`` (D,), ``{prefix}_factor_diag`` (D,) > 0, L's main diagonal, and ``{prefix}_factor_off``
(K - 1, D), its other diagonals in band storage (slots the stencil leaves out are held at zero). Sampling,
log-density and entropy cost O(D K) (:class:`gvae.numpyro.BandedNormal`).
"""
import jax.numpy as jnp
import numpyro
from jax.scipy.special import ndtri
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform

from ..guide_layout import BandSpec
from .distribution import BandedNormal

__all__ = ["AutoBandedNormal"]


class AutoBandedNormal(AutoContinuous):
    """``AutoBandedNormal(model, offsets=None, stencil=None, sites=None, prefix="auto",
    init_loc_fn=init_to_uniform, init_scale=0.1)``: the band on ``offsets`` (ints, 0 first) or a
    ``stencil`` ('chain', ('grid', rows, cols) or ('extgrid', rows, cols); the chain when neither is given)
    over the latent ``sites`` named (in the band's order; None: every latent site, in the model's order),
    the other sites diagonal. Initialised as AutoMultivariateNormal: loc by ``init_loc_fn``, the covariance
    ``init_scale**2 I``."""

    def __init__(self, model, *, offsets=None, stencil=None, sites=None, prefix="auto", init_loc_fn=init_to_uniform,
                 init_scale=0.1):
        if not init_scale > 0:
            raise ValueError(f"AutoBandedNormal: init_scale must be > 0, got {init_scale!r}")
        self._init_scale = init_scale
        self._spec = BandSpec("AutoBandedNormal", offsets, stencil, sites)
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self._layout = self._spec.layout({name: jnp.size(v) for name, v in self._init_locs.items()})

    def _get_posterior(self):
        K = len(self._layout.offsets)
        loc = numpyro.param(f"{self.prefix}_loc", self._init_latent)
        diag = numpyro.param(f"{self.prefix}_factor_diag", jnp.full(self.latent_dim, 1 / self._init_scale),
                             constraint=constraints.positive)
        off = numpyro.param(f"{self.prefix}_factor_off", jnp.zeros((K - 1, self.latent_dim)))
        return self._posterior(loc, diag, off)

    def _posterior(self, loc, diag, off):
        layout = self._layout
        factor = jnp.where(layout.mask, jnp.concatenate([diag[None], off]), jnp.zeros((), diag.dtype))
        return BandedNormal(loc, factor, layout.offsets, layout.order)

    def get_posterior(self, params):
        """The guide's :class:`BandedNormal` over the unconstrained latent vector at ``params``."""
        p = self.prefix
        return self._posterior(params[f"{p}_loc"], params[f"{p}_factor_diag"], params[f"{p}_factor_off"])

    def median(self, params):
        """The posterior's mean (its median), constrained: a dict of site values."""
        return self._unpack_and_constrain(params[f"{self.prefix}_loc"], params)

    def quantiles(self, params, quantiles):
        """Each latent coordinate's marginal quantiles (its marginal normal's, then constrained): a dict of
        (len(quantiles), *site shape) values."""
        posterior = self.get_posterior(params)
        q = jnp.asarray(quantiles)[..., None]
        latent = posterior.mean + jnp.sqrt(posterior.variance) * ndtri(q)
        return self._unpack_and_constrain(latent, params)

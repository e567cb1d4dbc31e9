"""A Gaussian with a banded precision factor as a JAX pytree (the counterpart of gvae.torch's).

N(loc, (L L^T)^-1) with L lower-triangular in band storage (docs/reference/api.md, section 1): ``factor`` of shape
``(*fbatch, K, n)`` on ``offsets``. Sampling, scoring, entropy and the KL against diagonal Gaussians cost
O(n K) per factor and right-hand side, through :mod:`gvae.jax.ops`; diag(Sigma) and tr(Sigma) are exact
(selected inversion), O(n K w) with w = offsets[-1]. Only the dense views are O(n^2) or more; on the
CPU, one that cannot fit in the memory the machine has free is refused (``ValueError``, naming its size)
before anything is allocated, under ``jit`` too (shapes are static) (:mod:`gvae.kernels.band.dense`).

``loc`` and ``factor`` are the pytree's leaves and ``offsets`` its static part, so a distribution passes
through ``jit``, ``vmap`` and ``grad`` (and is rebuilt there without the eager checks).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from ..kernels.band.dense import require_dense
from ..rules import gaussian as rules
from ..rules.checks import event_axis, offsets_tuple
from . import ops
from .checks import CHECKS

__all__ = ["BandedPrecisionNormal"]

_NAME = "BandedPrecisionNormal"
_OPS = rules.GaussianOps(solve_t=ops.band_solve_t, matvec_t=ops.band_matvec_t, logdet=ops.band_logdet,
                         square=jnp.square, trace_inv=ops.band_trace_inv, diag_inv=ops.band_diag_inv, log=jnp.log)


@jax.tree_util.register_pytree_node_class
class BandedPrecisionNormal:
    """N(loc, (L L^T)^-1), L in band storage: ``loc`` (*batch, n), ``factor`` (*fbatch, K, n) with
    ``factor[..., k, i] = L_{i, i - offsets[k]}`` and a positive main diagonal ``factor[..., 0, :]``;
    float32 or float64, one dtype.

    The batch shape is the broadcast of ``loc.shape[:-1]`` and ``fbatch``; the event shape is (n,). The
    factor is kept unexpanded (the kernels broadcast it), so a factor shared by a batch is solved against
    and differentiated once. On concrete arrays a non-positive diagonal is a ValueError here; under
    ``jit`` it is the kernels' error, wrapped (see :mod:`gvae.jax.ops`)."""

    def __init__(self, loc, factor, offsets):
        loc, factor = jnp.asarray(loc), jnp.asarray(factor)
        n, K = CHECKS.distribution(_NAME, loc, factor)
        offsets = offsets_tuple(_NAME, offsets, n, K)
        batch = CHECKS.batch(_NAME, "loc", loc.shape[:-1], factor.shape[:-2])
        if not isinstance(factor, jax.core.Tracer) and not bool((factor[..., 0, :] > 0).all()):
            raise ValueError(f"{_NAME}: factor's main diagonal factor[..., 0, :] must be > 0 (and not NaN)")
        self.loc = jnp.broadcast_to(loc, batch + (n,))
        self.factor = factor
        self.offsets = offsets

    def tree_flatten(self):
        return (self.loc, self.factor), self.offsets

    @classmethod
    def tree_unflatten(cls, offsets, leaves):
        # No checks: transformations rebuild the object from tracers or placeholders.
        new = object.__new__(cls)
        new.loc, new.factor = leaves
        new.offsets = offsets
        return new

    # -- the named stencils on an r x c lattice (docs/reference/api.md, section 1) ----------------------------

    @classmethod
    def chain(cls, loc, factor):
        """The chain, offsets (0, 1): ``factor`` (*fbatch, 2, n)."""
        return cls(loc, factor, (0, 1))

    @classmethod
    def grid(cls, loc, factor, rows, cols):
        """The grid on a rows x cols lattice (row-major, n = rows * cols), offsets (0, 1, cols): ``factor``
        (*fbatch, 3, n), its links across the lattice's edges (the wrap-around of offset 1) zeroed."""
        from ..model.lattice import grid_offsets
        return cls._lattice(loc, factor, grid_offsets(rows, cols), rows, cols)

    @classmethod
    def extgrid(cls, loc, factor, rows, cols):
        """The extended grid on a rows x cols lattice, offsets (0, 1, cols-1, cols, cols+1): ``factor``
        (*fbatch, 5, n), its wrap-around links (offsets 1, cols-1 and cols+1) zeroed."""
        from ..model.lattice import extgrid_offsets
        return cls._lattice(loc, factor, extgrid_offsets(rows, cols), rows, cols)

    @classmethod
    def _lattice(cls, loc, factor, offsets, rows, cols):
        from ..model.lattice import lattice_mask
        factor = jnp.asarray(factor)
        offsets = tuple(int(o) for o in offsets)
        if factor.ndim < 2 or tuple(factor.shape[-2:]) != (len(offsets), rows * cols):
            raise ValueError(f"{_NAME}: factor must have shape (*batch, {len(offsets)}, {rows * cols}) for offsets "
                             f"{offsets} on a {rows} x {cols} lattice, got {tuple(factor.shape)}")
        # where, not a product: a slot outside the matrix may hold NaN, and NaN * 0 is NaN.
        mask = np.asarray(lattice_mask(offsets, rows, cols)) > 0
        return cls(loc, jnp.where(mask, factor, jnp.zeros((), factor.dtype)), offsets)

    # -- shapes and moments ---------------------------------------------------------------------------

    @property
    def batch_shape(self):
        return self.loc.shape[:-1]

    @property
    def event_shape(self):
        return self.loc.shape[-1:]

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        """diag(Sigma), exactly, through ``band_diag_inv``: (*batch, n)."""
        return jnp.broadcast_to(ops.band_diag_inv(self.factor, self.offsets), self.loc.shape)

    def _on_cpu(self):
        """Whether the factor lives (or, traced, will run) on the CPU: the dense views' memory is then the
        host's, which :func:`require_dense` checks; an accelerator's allocator refuses on its own."""
        if isinstance(self.factor, jax.core.Tracer):
            return jax.default_backend() == "cpu"
        return all(d.platform == "cpu" for d in self.factor.devices())

    def _dense_factor(self, name="dense factor", matrices=2):
        """L as a dense (*fbatch, n, n) array, once ``require_dense`` has passed the view ``name`` whose
        computation holds ``matrices`` (*fbatch, n, n) arrays at once besides its (*batch, n, n) result
        (building L alone holds 2: each .at[].set below copies)."""
        n = self.loc.shape[-1]
        if self._on_cpu():
            # broadcast_to materialises the result over loc's batch where that is wider than the factor's
            wider = self.batch_shape != self.factor.shape[:-2]
            count = matrices * math.prod(self.factor.shape[:-2]) + wider * math.prod(self.batch_shape)
            require_dense(f"{_NAME}.{name}", self.batch_shape + (n, n), str(self.factor.dtype),
                          self.factor.dtype.itemsize, count)
        D = jnp.zeros(self.factor.shape[:-2] + (n, n), self.factor.dtype)
        for k, o in enumerate(self.offsets):
            i = np.arange(o, n)
            D = D.at[..., i, i - o].set(self.factor[..., k, o:])
        return D

    @property
    def precision_matrix(self):
        """L L^T as a dense (*batch, n, n) array (for small n; ValueError where it cannot fit in memory)."""
        # Measured: the peak holds about 4 n x n arrays (each .at[].set copies, then L and the product).
        D = self._dense_factor("precision_matrix", 4)
        return jnp.broadcast_to(D @ jnp.swapaxes(D, -1, -2), self.batch_shape + self.event_shape * 2)

    @property
    def covariance_matrix(self):
        """(L L^T)^-1 as a dense (*batch, n, n) array (for small n), by Cholesky solves with L; ValueError
        where it cannot fit in memory."""
        # Measured: the peak holds about 6 n x n arrays (L, the identity, the solves' and the result).
        D = self._dense_factor("covariance_matrix", 6)
        eye = jnp.broadcast_to(jnp.eye(D.shape[-1], dtype=D.dtype), D.shape)
        return jnp.broadcast_to(cho_solve((D, True), eye), self.batch_shape + self.event_shape * 2)

    # -- sampling and scoring -------------------------------------------------------------------------

    def rsample(self, key, sample_shape=()):
        """loc + L^-T eps, eps ~ N(0, I) of shape ``sample_shape + batch_shape + (n,)`` drawn with ``key``;
        differentiable in loc and factor."""
        eps = jax.random.normal(key, tuple(sample_shape) + self.loc.shape, self.loc.dtype)
        return rules.sample(_OPS, self.factor, self.offsets, self.loc, eps)

    def rsample_log_prob_kl(self, key, sample_shape=()):
        """``(z, log_prob(z), KL(self || N(0, I)))`` of a reparameterised sample z (as :meth:`rsample`) in one
        kernel call and one backward (:func:`gvae.jax.band_head`): what a VAE's step asks of its
        posterior, without the separate calls of ``rsample``, ``log_prob`` and ``kl_to_standard_normal``."""
        eps = jax.random.normal(key, tuple(sample_shape) + self.loc.shape, self.loc.dtype)
        return ops.band_head(self.factor, self.offsets, self.loc, eps)

    def log_prob(self, value):
        """log N(value; loc, (L L^T)^-1) = log det L - |L^T (value - loc)|^2 / 2 - n log(2 pi) / 2;
        ``value`` (*sample, *batch, n) gives (*sample, *batch)."""
        return rules.log_density(_OPS, self.factor, self.offsets, value, self.loc)

    def entropy(self):
        """n (1 + log 2 pi) / 2 - log det L, shape ``batch_shape``."""
        return jnp.broadcast_to(rules.entropy(_OPS, self.factor), self.batch_shape)

    # -- closed-form KL -------------------------------------------------------------------------------

    def kl_to_standard_normal(self):
        """KL(self || N(0, I)) = (tr Sigma + |loc|^2 - n) / 2 + log det L, shape ``batch_shape``."""
        return self.kl_to_diagonal(jnp.zeros((), self.loc.dtype), jnp.ones((), self.loc.dtype))

    def kl_to_diagonal(self, loc, scale):
        """KL(self || N(loc, diag scale^2)), loc and scale broadcasting to (*batch, n):
        sum log s + log det L + (sum_i Sigma_ii / s_i^2 + |(mu - loc) / s|^2 - n) / 2, where the sum is
        tr(Sigma) / s^2 (``band_trace_inv``) when the scale is one number per distribution (no axis, or a
        last axis of size 1), else through diag(Sigma) (``band_diag_inv``).

        A concrete scale with an entry <= 0 or NaN is a ValueError here, as gvae.torch's validated Normal
        refuses it; a traced one (under ``jit`` or ``vmap``) cannot be read, and such a scale gives NaN
        there, as in gvae.torch without validation (``validate_args=False``, or under torch.compile)."""
        loc, scale = jnp.asarray(loc, self.loc.dtype), jnp.asarray(scale, self.loc.dtype)
        # Read on the host: under jit even a concrete scale's comparison would be staged (a tracer).
        positive = None if isinstance(scale, jax.core.Tracer) else np.asarray(scale) > 0
        if positive is not None and not positive.all():
            bad = int((~positive).sum())
            raise ValueError(f"{_NAME}.kl_to_diagonal: scale must be > 0 (and not NaN): the standard deviations "
                             f"of the diagonal Gaussian; {bad} of its {scale.size} entries are not")
        event_axis(f"{_NAME}.kl_to_diagonal", (("loc", loc), ("scale", scale)), self.loc.shape[-1])
        return rules.kl_to_diagonal(_OPS, self.factor, self.offsets, self.loc, loc, scale)

"""A Gaussian with a banded precision factor as a ``torch.distributions.Distribution``.

N(loc, (L L^T)^-1) with L lower-triangular in band storage (docs/reference/api.md, section 1): ``factor`` of shape
``(*fbatch, K, n)`` on ``offsets``. Sampling, scoring, entropy and the KL against diagonal Gaussians cost
O(n K) per factor and right-hand side, through the ``gvae::`` operators of :mod:`gvae.torch.ops`; the
marginal variances diag(Sigma) and tr(Sigma) are exact (selected inversion), O(n K w) with
w = offsets[-1]. Only the dense views ``precision_matrix`` and ``covariance_matrix`` are O(n^2) or more;
on the CPU, one that cannot fit in the memory the machine has free is refused (``ValueError``, naming its
size) before anything is allocated (:mod:`gvae.kernels.band.dense`).
"""
import functools
import math

import torch
from torch.distributions import Distribution, Independent, Normal, constraints, register_kl

from ..kernels.band.dense import require_dense
from ..rules import gaussian as rules
from ..rules.checks import event_axis, offsets_tuple
from . import ops
from .checks import CHECKS
from .ops import band_head

__all__ = ["BandedPrecisionNormal"]

_OPS = rules.GaussianOps(solve_t=ops.band_solve_t, matvec_t=ops.band_matvec_t, logdet=ops.band_logdet,
                         square=torch.square, trace_inv=ops.band_trace_inv, diag_inv=ops.band_diag_inv,
                         log=torch.log)


def _constant_result(fn):
    """``torch.compiler.assume_constant_result(fn)`` without importing Dynamo when gvae.torch is imported
    (importing torch._dynamo takes longer than torch itself): in torch 2.13 the decorator imports Dynamo and
    sets only this attribute, which Dynamo reads when it traces a call (tests/test_torch_distribution.py
    checks that the two mark a function alike)."""
    fn._dynamo_marked_constant = True
    return fn


# The offsets and the lattice's mask are Python constants of a traced program: torch.compile runs these
# NumPy helpers once, eagerly, instead of tracing into them.
@_constant_result
def _checked_offsets(name, offsets, n, K):
    return offsets_tuple(name, offsets, n, K)


@_constant_result
def _lattice_mask(offsets, rows, cols):
    """gvae.model.lattice.lattice_mask as nested tuples of bools."""
    from ..model.lattice import lattice_mask
    return tuple(tuple(row) for row in (lattice_mask(offsets, rows, cols) > 0).tolist())


@functools.lru_cache(maxsize=64)
def _device_mask(offsets, rows, cols, device):
    """The lattice's mask as a bool tensor on ``device``, made once: on a GPU, a new one every call would
    copy it from the host, a copy that waits for the work queued before it."""
    with torch.inference_mode(False):  # a normal tensor even when first asked for under inference mode
        return torch.tensor(_lattice_mask(offsets, rows, cols), dtype=torch.bool, device=device)


class _PositiveDiagonal(constraints.Constraint):
    """A band factor (*batch, K, n) whose main diagonal factor[..., 0, :] is strictly positive (the
    slots that do not exist in the matrix may hold anything)."""
    event_dim = 2

    def check(self, value):
        return (value[..., 0, :] > 0).all(-1)


class BandedPrecisionNormal(Distribution):
    """N(loc, (L L^T)^-1), L in band storage: ``loc`` (*batch, n), ``factor`` (*fbatch, K, n) with
    ``factor[..., k, i] = L_{i, i - offsets[k]}`` and a positive main diagonal ``factor[..., 0, :]``.

    The batch shape is the broadcast of ``loc.shape[:-1]`` and ``fbatch``; the event shape is (n,). The
    factor is kept unexpanded (the kernels broadcast it against samples and ``loc``), so a factor shared
    by a batch is stored, solved against and differentiated once."""
    arg_constraints = {"loc": constraints.real_vector, "factor": _PositiveDiagonal()}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, factor, offsets, validate_args=None):
        name = "BandedPrecisionNormal"
        n, K = CHECKS.distribution(name, loc, factor)
        if loc.device != factor.device:
            raise TypeError(f"{name}: loc and factor must be on one device, got loc on {loc.device}, "
                            f"factor on {factor.device}")
        self.offsets = _checked_offsets(name, tuple(offsets), int(n), int(K))
        batch_shape = torch.Size(CHECKS.batch(name, "loc", loc.shape[:-1], factor.shape[:-2]))
        self.loc = loc.expand(batch_shape + (n,))
        self.factor = factor
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    # -- the named stencils on an r x c lattice (docs/reference/api.md, section 1) ----------------------------

    @classmethod
    def chain(cls, loc, factor, validate_args=None):
        """The chain, offsets (0, 1): ``factor`` (*fbatch, 2, n)."""
        return cls(loc, factor, (0, 1), validate_args)

    @classmethod
    def grid(cls, loc, factor, rows, cols, validate_args=None):
        """The grid on a rows x cols lattice (row-major, n = rows * cols), offsets (0, 1, cols): ``factor``
        (*fbatch, 3, n), its links across the lattice's edges (the wrap-around of offset 1) zeroed."""
        from ..model.lattice import grid_offsets
        return cls._lattice(loc, factor, grid_offsets(rows, cols), rows, cols, validate_args)

    @classmethod
    def extgrid(cls, loc, factor, rows, cols, validate_args=None):
        """The extended grid on a rows x cols lattice, offsets (0, 1, cols-1, cols, cols+1): ``factor``
        (*fbatch, 5, n), its wrap-around links (offsets 1, cols-1 and cols+1) zeroed."""
        from ..model.lattice import extgrid_offsets
        return cls._lattice(loc, factor, extgrid_offsets(rows, cols), rows, cols, validate_args)

    @classmethod
    def _lattice(cls, loc, factor, offsets, rows, cols, validate_args):
        if not isinstance(factor, torch.Tensor) or factor.dim() < 2 or tuple(factor.shape[-2:]) != (len(offsets), rows * cols):
            got = tuple(factor.shape) if isinstance(factor, torch.Tensor) else type(factor).__name__
            raise ValueError(f"BandedPrecisionNormal: factor must have shape (*batch, {len(offsets)}, {rows * cols}) "
                             f"for offsets {offsets} on a {rows} x {cols} lattice, got {got}")
        # where, not a product: a slot outside the matrix may hold NaN, and NaN * 0 is NaN.
        if torch.compiler.is_compiling():
            mask = torch.tensor(_lattice_mask(offsets, rows, cols), dtype=torch.bool, device=factor.device)
        else:
            mask = _device_mask(offsets, rows, cols, factor.device)
        return cls(loc, torch.where(mask, factor, torch.zeros((), dtype=factor.dtype, device=factor.device)),
                   offsets, validate_args)

    # -- Distribution ---------------------------------------------------------------------------------

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BandedPrecisionNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.factor = self.factor
        new.offsets = self.offsets
        super(BandedPrecisionNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        """diag(Sigma), exactly, through ``band_diag_inv``."""
        return ops.band_diag_inv(self.factor, self.offsets).expand(self.batch_shape + self.event_shape)

    def _dense_factor(self, name="dense factor", matrices=3):
        """L as a dense (*fbatch, n, n) tensor, once ``require_dense`` has passed the view ``name`` whose
        computation holds ``matrices`` (*fbatch, n, n) tensors at once (checked on the CPU only: CUDA's
        allocator refuses what does not fit with an error of its own). The sum below holds 3 of them:
        the running total, the next diagonal and their sum."""
        n = self.event_shape[0]
        if self.factor.device.type == "cpu":
            shape = self.factor.shape[:-2] + (n, n)
            require_dense(f"BandedPrecisionNormal.{name}", shape, str(self.factor.dtype).replace("torch.", ""),
                          self.factor.element_size(), matrices * math.prod(self.factor.shape[:-2]))
        return sum(torch.diag_embed(self.factor[..., k, o:], offset=-o)
                   for k, o in enumerate(self.offsets) if o < n)

    @property
    def precision_matrix(self):
        """L L^T as a dense (*batch, n, n) tensor (for small n; ValueError where it cannot fit in memory)."""
        # 3 n x n tensors at once (measured): building L, more than L and the product after it.
        D = self._dense_factor("precision_matrix", 3)
        return (D @ D.mT).expand(self.batch_shape + self.event_shape + self.event_shape)

    @property
    def covariance_matrix(self):
        """(L L^T)^-1 as a dense (*batch, n, n) tensor (for small n; ValueError where it cannot fit in
        memory)."""
        # 3 n x n tensors at once (measured): building L, then L, the result and LAPACK's copy of it.
        return torch.cholesky_inverse(self._dense_factor("covariance_matrix", 3)).expand(
            self.batch_shape + self.event_shape + self.event_shape)

    def rsample(self, sample_shape=torch.Size()):
        """loc + L^-T eps, eps ~ N(0, I) of shape ``sample_shape + batch_shape + (n,)``."""
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return rules.sample(_OPS, self.factor, self.offsets, self.loc, eps)

    def rsample_log_prob_kl(self, sample_shape=torch.Size()):
        """``(z, log_prob(z), KL(self || N(0, I)))`` of a reparameterised sample z (as :meth:`rsample`) in one
        operator call and one backward (:func:`gvae.torch.band_head`): what a VAE's step asks of its
        posterior, without the separate calls of ``rsample``, ``log_prob`` and ``kl_divergence``."""
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        return band_head(self.factor, self.offsets, self.loc, eps)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value):
        """log N(value; loc, (L L^T)^-1) = log det L - |L^T (value - loc)|^2 / 2 - n log(2 pi) / 2."""
        if self._validate_args:
            self._validate_sample(value)
        return rules.log_density(_OPS, self.factor, self.offsets, value, self.loc)

    def entropy(self):
        """n (1 + log 2 pi) / 2 - log det L, shape ``batch_shape``."""
        return rules.entropy(_OPS, self.factor).expand(self.batch_shape)


def _kl_diagonal(q, loc, scale):
    """KL(q || N(loc, diag scale^2)) with loc, scale broadcasting to q's (*batch, n)
    (:func:`gvae.rules.gaussian.kl_to_diagonal`). A scale <= 0 is the Normal's own validation's
    ValueError; without validation it gives NaN (gvae.jax's kl_to_diagonal does the same: a ValueError for
    a concrete scale, NaN under jit)."""
    event_axis("kl_divergence(BandedPrecisionNormal, Normal)",
               (("the Normal's loc", loc), ("the Normal's scale", scale)), q.event_shape[0])
    return rules.kl_to_diagonal(_OPS, q.factor, q.offsets, q.loc, loc, scale)


@register_kl(BandedPrecisionNormal, Normal)
def _kl_banded_normal(q, p):
    """KL against the product of p's univariate normals over q's event axis: p's batch shape broadcasts
    with q's (*batch, n); ``Normal(0., 1.)`` is N(0, I)."""
    return _kl_diagonal(q, p.loc, p.scale)


@register_kl(BandedPrecisionNormal, Independent)
def _kl_banded_independent(q, p):
    """KL against Independent(Normal(loc, scale), 1), a diagonal Gaussian over q's event."""
    if not isinstance(p.base_dist, Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError("kl_divergence(BandedPrecisionNormal, Independent): only Independent(Normal, 1) "
                                  f"is implemented, got Independent({type(p.base_dist).__name__}, "
                                  f"{p.reinterpreted_batch_ndims})")
    return _kl_diagonal(q, p.base_dist.loc, p.base_dist.scale)

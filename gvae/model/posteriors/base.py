"""What every posterior family provides, and the pieces they share."""
import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import numpy as np

from ... import ops
from ...kernels.band.dense import require_dense
from ..gaussian import LOG_2PI, std_normal_log_prob


# eq=False: the fields are arrays, which compare elementwise; records are compared (and hashed) as objects.
@dataclass(frozen=True, eq=False)
class PosteriorParams:
    """The parameters q of a family's Gaussian q(z|x) for a batch, as its ``split`` gives them: ``mu``
    (B, d), the mean; each family's record adds its own fields (:attr:`Family.record`). Fields hold what
    the family computed from the head: traced values inside value_and_grad, arrays of the head's device
    outside. The batch B may be several axes ((S, B): one q per sample of the layer above).

    ``q["mu"]`` reads the field ``mu`` as ``q.mu`` does: ``gvae.load(DIR).encode(x)`` gave a dict before
    these records, and code written against it goes on working."""

    mu: object

    def __getitem__(self, name):
        if name not in {f.name for f in fields(self)}:
            raise KeyError(f"{type(self).__name__} has no field {name!r}; its fields: "
                           f"{', '.join(f.name for f in fields(self))}")
        return getattr(self, name)


# The methods that take a family's q first, each checked (_own_q) to get the family's own record: Family's
# own where it defines them, a subclass's by Family.__init_subclass__.
_TAKES_Q = ("sample", "log_prob", "kl", "entropy", "variance", "precision", "factor_diagonals", "correlation",
            "kl_mc", "kl_diagonal", "merge")


def _own_q(method):
    """``method`` refusing, with a TypeError naming both, a q other than its family's record."""
    @functools.wraps(method)
    def checked(self, q, *args, **kwargs):
        if not isinstance(q, self.record):
            raise TypeError(f"the {self.name} posterior takes its parameters as a {self.record.__name__} (from its "
                            f"split), got {type(q).__name__}")
        return method(self, q, *args, **kwargs)
    return checked


def dense_check(what, shape, matrices):
    """Refuse (ValueError naming the sizes) a dense float64 ``shape`` (*B, d, d) of a family's ``what``
    whose computation holds ``matrices`` of those arrays at once, where the machine has not that much
    memory free: :func:`gvae.kernels.band.dense.require_dense`, before anything is allocated."""
    require_dense(what, shape, "float64", 8, matrices * math.prod(int(s) for s in shape[:-2]))


class Family(ABC):
    """A Gaussian q(z|x) parameterised by the encoder's output head.

    ``split(h, d)`` turns the head (B, head_size(d)) into the family's parameters ``q``, a record of
    the type :attr:`record` (a :class:`PosteriorParams` with the family's own fields);
    ``sample(q, eps)`` maps eps ~ N(0, I) of shape (S, B, d) to z (S, B, d) by reparameterisation;
    ``log_prob(q, z)`` is log q(z|x) of shape (S, B); ``kl(q)`` is KL(q || N(0, I)) in closed form,
    shape (B,); ``entropy(q)`` shape (B,); ``variance(q)`` diag(Sigma), shape (B, d); ``kl_diagonal(q, p)``
    KL(q || N(p.mu, diag p.sigma^2)) in closed form (p a ``DiagonalParams``), shape (B,); ``precision(q)``
    the dense (B, d, d) precision, float64, for tests. The batch B may be several axes (a q per sample of
    the layer above, (S, B), in a hierarchy). Works on traced values (inside value_and_grad) and on plain
    arrays alike.

    What a picture of q shows, on the host in float64: ``factor_diagonals(q)`` the diagonals of the
    Cholesky factor of the precision, ``diagonal_label(offset, d)`` what each one links, ``correlation(q)``
    the posterior correlation matrices; ``structured`` says whether there are correlations to show and
    ``banded`` whether q holds its factor in band storage.

    Every method that takes q refuses, with a TypeError, a record other than the family's own."""

    name = ""
    record = PosteriorParams  # the type of this family's q: each family names its own record
    on_lattice = False  # whether the family lays the latent units out on a grid
    structured = True  # whether q correlates the latent units (every family but diagonal)
    banded = False  # whether q holds the Cholesky factor of its precision in band storage (L, offsets)
    # whether the family has ``merge(q, p)``: the Ladder VAE's precision-weighted merge of q with a
    # DiagonalParams p, N(mu, Sigma) proportional to q p, as a record the family's own methods take
    mergeable = False

    def __init_subclass__(cls, **kwargs):
        # One check for every family, in place of a line at the top of each of their methods.
        super().__init_subclass__(**kwargs)
        for name in _TAKES_Q:
            if name in vars(cls):
                setattr(cls, name, _own_q(vars(cls)[name]))

    def __init__(self, floor=1e-4, grid_shape=None):
        if not floor > 0:
            raise ValueError(f"the floor on positive parameters must be > 0, got {floor}")
        if grid_shape is not None and not self.on_lattice:
            raise ValueError(f"a grid shape applies only to the grid and extgrid families, not {self.name}")
        self.floor = floor
        self.grid_shape = grid_shape

    @abstractmethod
    def head_size(self, d):
        """Width of the encoder's output head for latent dimension d."""

    @abstractmethod
    def split(self, h, d):
        """The head h (B, head_size(d)) -> the family's parameters q, an instance of :attr:`record`."""

    @abstractmethod
    def sample(self, q, eps):
        """eps (S, B, d) standard normal -> z (S, B, d) ~ q, by reparameterisation."""

    @abstractmethod
    def log_prob(self, q, z):
        """log q(z|x), z (S, B, d) -> (S, B)."""

    @abstractmethod
    def kl(self, q):
        """KL(q || N(0, I)) in closed form, (B,)."""

    @abstractmethod
    def entropy(self, q):
        """The entropy of q, (B,)."""

    @abstractmethod
    def variance(self, q):
        """diag(Sigma): the marginal variances of q, (B, d)."""

    @abstractmethod
    def precision(self, q):
        """The dense precision (B, d, d) as a float64 NumPy array on the host, for tests and pictures."""

    @_own_q
    def factor_diagonals(self, q, most=None):
        """The diagonals of the Cholesky factor L (P = L L^T, L lower) of each precision in q, on the host:
        (offsets, values, free) with ``offsets`` a tuple of K ints, 0 first; ``values`` float64 (B, K, d),
        values[..., k, i] = L[i, i - offsets[k]] for i >= offsets[k] and 0 for the i < offsets[k] where L
        has no entry; ``free`` bool (K, d), True at the entries that exist and that the family does not
        hold at zero (a lattice's wrap-around links are not free).

        Here the dense precision is factored (np.linalg.cholesky) and its first ``most`` diagonals (all d
        when None) are given, every existing entry free; band families read their band storage instead
        and give their stencil's first ``most`` diagonals."""
        P = self.precision(q)
        d = P.shape[-1]
        dense_check(f"{self.name}.factor_diagonals", P.shape, 2)  # the factor and LAPACK's copy, besides P
        chol = np.linalg.cholesky(P)
        offsets = tuple(range(d if most is None else min(d, most)))
        values = np.zeros(P.shape[:-2] + (len(offsets), d))
        for k, o in enumerate(offsets):
            values[..., k, o:] = np.diagonal(chol, offset=-o, axis1=-2, axis2=-1)
        return offsets, values, np.arange(d) >= np.array(offsets)[:, None]

    def diagonal_label(self, offset, d):
        """Legend text for the diagonal L[i, i - offset] of the factor (latent dimension d), naming the
        link between units it carries where the family gives it one ("L[i, i-1]: previous unit")."""
        if offset == 0:
            return "main diagonal L[i, i]"
        link = self._link(offset, d)
        return f"L[i, i-{offset}]: {link}" if link else f"L[i, i-{offset}]"

    def _link(self, offset, d):
        """The name of the link that the factor's diagonal at ``offset`` > 0 carries, or None."""
        return None

    @_own_q
    def correlation(self, q):
        """The posterior correlation matrices corr(z_i, z_j | x), float64 (B, d, d) on the host, from the
        inverse of :meth:`precision` (symmetrised, clipped to [-1, 1]); a ValueError where they cannot fit
        in memory (:func:`dense_check`)."""
        P = self.precision(q)
        dense_check(f"{self.name}.correlation", P.shape, 3)  # the inverse, LAPACK's copy, the symmetrised sum
        cov = np.linalg.inv(P)
        del P
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        s = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        return np.clip(cov / (s[..., :, None] * s[..., None, :]), -1.0, 1.0)

    @_own_q
    def kl_mc(self, q, z):
        """Monte Carlo KL from samples z (S, B, d): mean over S of log q(z) - log N(z; 0, I)."""
        return ops.mean(self.log_prob(q, z) - std_normal_log_prob(z), axis=0)

    @_own_q
    def kl_diagonal(self, q, p):
        """KL(q || N(m, diag s^2)) in closed form for p a ``DiagonalParams`` with p.mu = m, p.sigma = s
        (shapes broadcasting with q's (B, d)), shape (B,):

            0.5 sum_i [(Sigma_ii + (mu_i - m_i)^2) / s_i^2 - 1 + log s_i^2] - 0.5 log det Sigma,

        with 0.5 log det Sigma = H(q) - d/2 (1 + log 2 pi). The KL of a hierarchy's lower layer against
        its conditional prior p(z_l | z_{l+1}) in top-down inference."""
        diff = q.mu - p.mu
        s = p.sigma
        quad = ops.sum((self.variance(q) + diff * diff) / (s * s), axis=-1)
        return 0.5 * quad + ops.sum(ops.log(s), axis=-1) - self.entropy(q) + 0.5 * q.mu.shape[-1] * LOG_2PI

"""What every posterior family provides, and the pieces they share."""
from abc import ABC, abstractmethod

from ... import ops
from ..gaussian import LOG_2PI, std_normal_log_prob


class Family(ABC):
    """A Gaussian q(z|x) parameterised by the encoder's output head.

    ``split(h, d)`` turns the head (B, head_size(d)) into the family's parameters ``q`` (a dict);
    ``sample(q, eps)`` maps eps ~ N(0, I) of shape (S, B, d) to z (S, B, d) by reparameterisation;
    ``log_prob(q, z)`` is log q(z|x) of shape (S, B); ``kl(q)`` is KL(q || N(0, I)) in closed form,
    shape (B,); ``entropy(q)`` shape (B,); ``variance(q)`` diag(Sigma), shape (B, d); ``kl_diagonal(q, p)``
    KL(q || N(p["mu"], diag p["sigma"]^2)) in closed form, shape (B,); ``precision(q)`` the dense
    (B, d, d) precision, float64, for tests. The batch B may be several axes (a q per sample of the layer
    above, (S, B), in a hierarchy). Works on traced values (inside value_and_grad) and on plain arrays
    alike."""

    name = ""
    on_lattice = False  # whether the family lays the latent units out on a grid

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
        """The head h (B, head_size(d)) -> the family's parameters q (a dict)."""

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

    def kl_mc(self, q, z):
        """Monte Carlo KL from samples z (S, B, d): mean over S of log q(z) - log N(z; 0, I)."""
        return ops.mean(self.log_prob(q, z) - std_normal_log_prob(z), axis=0)

    def kl_diagonal(self, q, p):
        """KL(q || N(m, diag s^2)) in closed form for p = {"mu": m, "sigma": s} (shapes broadcasting with
        q's (B, d)), shape (B,):

            0.5 sum_i [(Sigma_ii + (mu_i - m_i)^2) / s_i^2 - 1 + log s_i^2] - 0.5 log det Sigma,

        with 0.5 log det Sigma = H(q) - d/2 (1 + log 2 pi). The KL of a hierarchy's lower layer against
        its conditional prior p(z_l | z_{l+1}) in top-down inference."""
        diff = q["mu"] - p["mu"]
        s = p["sigma"]
        quad = ops.sum((self.variance(q) + diff * diff) / (s * s), axis=-1)
        return 0.5 * quad + ops.sum(ops.log(s), axis=-1) - self.entropy(q) + 0.5 * q["mu"].shape[-1] * LOG_2PI

"""What every posterior family provides, and the pieces they share."""
from abc import ABC, abstractmethod

from ... import ops
from ..gaussian import std_normal_log_prob


class Family(ABC):
    """A Gaussian q(z|x) parameterised by the encoder's output head.

    ``split(h, d)`` turns the head (B, head_size(d)) into the family's parameters ``q`` (a dict);
    ``sample(q, eps)`` maps eps ~ N(0, I) of shape (S, B, d) to z (S, B, d) by reparameterisation;
    ``log_prob(q, z)`` is log q(z|x) of shape (S, B); ``kl(q)`` is KL(q || N(0, I)) in closed form,
    shape (B,); ``entropy(q)`` shape (B,); ``precision(q)`` the dense (B, d, d) precision, float64,
    for tests. Works on traced values (inside value_and_grad) and on plain arrays alike."""

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
    def precision(self, q):
        """The dense precision (B, d, d) as a float64 NumPy array on the host, for tests and pictures."""

    def kl_mc(self, q, z):
        """Monte Carlo KL from samples z (S, B, d): mean over S of log q(z) - log N(z; 0, I)."""
        return ops.mean(self.log_prob(q, z) - std_normal_log_prob(z), axis=0)

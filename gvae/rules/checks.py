"""The argument checks of gvae.torch's and gvae.jax's band operators and BandedPrecisionNormal, written
once: dtypes, a band factor's shape and offsets, the broadcast of a right-hand side's batch against the
factor's, an event axis. A wrong type or dtype is a ``TypeError``, a wrong shape or offsets a
``ValueError``; each message names the function and the argument. Shapes are read as plain Python, so
the checks run on a tracer's sizes too (torch.compile's symbolic ones, jit's static ones)."""
from ..kernels.band import offsets_problem, validate_offsets


class Checks:
    """The checks for one array type, built once by its front end.

    ``array_type``: the class every argument must be an instance of (None: not checked, the caller has
    converted its arguments); ``floats``: the dtypes accepted, named ``float_names`` in messages;
    ``broadcast_shapes(*shapes)``: the array library's broadcast of shapes, raising ``broadcast_error``
    where they do not broadcast."""

    __slots__ = ("array_type", "floats", "float_names", "broadcast_shapes", "broadcast_error")

    def __init__(self, array_type, floats, float_names, broadcast_shapes, broadcast_error):
        self.array_type = array_type
        self.floats = tuple(floats)
        self.float_names = float_names
        self.broadcast_shapes = broadcast_shapes
        self.broadcast_error = broadcast_error

    def dtypes(self, name, args):
        """TypeError unless every (argname, array) of ``args`` is an array of an accepted dtype, all of one."""
        array_type = self.array_type
        for argname, t in args:
            # A list or a NumPy array given to PyTorch: its own dtype would name a wrong cause.
            if array_type is not None and not isinstance(t, array_type):
                raise TypeError(f"{name}: {argname} must be a {array_type.__module__}.{array_type.__qualname__}, "
                                f"got {type(t).__module__}.{type(t).__qualname__}")
            if t.dtype not in self.floats:
                raise TypeError(f"{name}: {argname} has dtype {t.dtype}, expected {self.float_names}")
        if len({t.dtype for _, t in args}) > 1:
            raise TypeError(f"{name}: arguments must share one dtype, got "
                            + ", ".join(f"{a} {t.dtype}" for a, t in args))

    def factor(self, name, L, offsets=None):
        """(K, n) of a band factor L (*batch, K, n) with K, n >= 1; with ``offsets``, a ValueError unless
        they suit it (:func:`gvae.kernels.band.offsets_problem`: plain Python, symbolic sizes too)."""
        if L.ndim < 2 or L.shape[-1] < 1 or L.shape[-2] < 1:
            raise ValueError(f"{name}: L must have shape (*batch, K, n) with K, n >= 1, got {tuple(L.shape)}")
        K, n = L.shape[-2:]
        if offsets is not None:
            problem = offsets_problem(tuple(offsets), n, K)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
        return K, n

    def batch(self, name, argname, lead, batch):
        """The broadcast (a tuple) of ``argname``'s batch shape ``lead`` with the factor batch shape ``batch``."""
        try:
            return tuple(self.broadcast_shapes(batch, lead))
        except self.broadcast_error:
            raise ValueError(f"{name}: {argname}'s batch shape {tuple(lead)} does not broadcast with the factor "
                             f"batch shape {tuple(batch)}") from None

    def vector(self, name, argname, L, v):
        """The shape of a solve's or product's result on L (*batch, K, n) and ``argname`` v (*lead, n): the
        broadcast of batch and lead, then n."""
        n = L.shape[-1]
        if v.ndim < 1 or v.shape[-1] != n:
            raise ValueError(f"{name}: {argname} must have shape (*lead, n) with n={n} (L's last axis), "
                             f"got {tuple(v.shape)}")
        return self.batch(name, argname, v.shape[:-1], L.shape[:-2]) + (n,)

    def distribution(self, name, loc, factor):
        """(n, K) of BandedPrecisionNormal's loc (*batch, n) and factor (*fbatch, K, n): float arrays of
        one dtype, with the same n."""
        self.dtypes(name, (("loc", loc), ("factor", factor)))
        if loc.ndim < 1 or factor.ndim < 2 or factor.shape[-1] != loc.shape[-1]:
            raise ValueError(f"{name}: loc must have shape (*batch, n) and factor (*batch, K, n) with the same n, "
                             f"got loc {tuple(loc.shape)}, factor {tuple(factor.shape)}")
        return loc.shape[-1], factor.shape[-2]


def offsets_tuple(name, offsets, n, K):
    """The offsets validated for a factor with n columns and K diagonals, as a tuple of ints (validation
    cached: :func:`gvae.kernels.band.validate_offsets`, whose ValueError names ``name``)."""
    return tuple(validate_offsets(name, offsets, n, K).tolist())


def event_axis(name, args, n):
    """ValueError unless each (what, array) of ``args`` broadcasts over an event of n: no axis, or a last
    axis of 1 or n entries."""
    for what, t in args:
        if t.ndim and t.shape[-1] not in (1, n):
            raise ValueError(f"{name}: {what} has {t.shape[-1]} entries in its last axis, the event has n={n}")

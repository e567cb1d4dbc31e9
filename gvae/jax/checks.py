"""The argument checks of gvae.jax (:class:`gvae.rules.checks.Checks`) and the conversion of arguments to
JAX arrays. Shapes and dtypes are static: the checks run while tracing as well as eagerly, on JAX arrays
(converted first, hence no type check); :mod:`gvae.jax.distribution`'s too."""
import jax
import jax.numpy as jnp
import numpy as np

from ..rules.checks import Checks, offsets_tuple

CHECKS = Checks(None, (np.dtype(np.float32), np.dtype(np.float64)), "float32 or float64", np.broadcast_shapes,
                ValueError)
_dtype = CHECKS.dtypes


def _array(x):
    """x as a JAX array (a jax.Array or tracer as it is: jnp.asarray would dispatch a conversion)."""
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


def _factor(name, L, offsets=None):
    """L as an array checked to have shape (*batch, K, n), K, n >= 1, and the offsets as a tuple."""
    L = _array(L)
    K, n = CHECKS.factor(name, L)
    return L, (None if offsets is None else offsets_tuple(name, offsets, n, K))

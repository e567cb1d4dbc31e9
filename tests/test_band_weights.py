"""The weights ``g`` of the band VJP kernels and ``band_outer``'s ``scale`` must be real numbers (a complex
one lost its imaginary part in the conversion to L's dtype), and band_logdet_grad checks its factor as
band_logdet does: log det L does not exist for a diagonal entry <= 0 (it returned inf for a zero)."""
import warnings

import numpy as np
import pytest

from gvae import kernels
from tests.band_reference import random_factor

OFFS = (0, 1, 3)
N = 6
_L = random_factor(np.random.default_rng(0), (2,), OFFS, N)

# name -> (function of the weights g, shape g broadcasts to)
WEIGHTED = {
    "band_logdet_grad": (lambda g, **kw: kernels.band_logdet_grad(_L, g, **kw), (2,)),
    "band_trace_inv_grad": (lambda g, **kw: kernels.band_trace_inv_grad(_L, OFFS, g, **kw), (2,)),
    "band_diag_inv_grad": (lambda g, **kw: kernels.band_diag_inv_grad(_L, OFFS, g, **kw), (2, N)),
}


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_complex_and_non_numeric_weights_are_refused(name):
    fn, shape = WEIGHTED[name]
    for bad in (np.ones(shape, np.complex128), np.ones(shape, np.complex64) * 1j, 1 + 0j, [1j] * shape[-1],
                np.array(["1"] * shape[-1]), np.array([None] * shape[-1])):
        with pytest.raises(TypeError, match=f"^{name} g: expected real numbers"):
            fn(bad)


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_real_weights_of_any_real_dtype_give_the_float_result(name):
    fn, shape = WEIGHTED[name]
    expected = fn(np.full(shape, 2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning or other conversion warning
        for g in (2, 2.0, np.full(shape, 2, np.int32), np.full(shape, 2, np.float32), np.full(shape[-1:], 2.0)):
            np.testing.assert_array_equal(fn(g), expected)
    assert fn(np.full(shape, True)).dtype == _L.dtype


def test_band_outer_scale_must_be_one_real_number():
    a = np.ones((2, N))
    with pytest.raises(TypeError, match="^band_outer scale: expected real numbers"):
        kernels.band_outer(a, a, OFFS, (2,), scale=1j)
    with pytest.raises(ValueError, match="^band_outer: scale must be a number"):
        kernels.band_outer(a, a, OFFS, (2,), scale=[1.0, 2.0])
    np.testing.assert_array_equal(kernels.band_outer(a, a, OFFS, (2,), scale=np.int64(2)),
                                  kernels.band_outer(a, a, OFFS, (2,), scale=2.0))


@pytest.mark.parametrize("bad,message", [(0.0, "strictly positive"), (-0.0, "strictly positive"),
                                         (-1.0, "strictly positive"), (np.nan, "L contains NaN or inf"),
                                         (np.inf, "L contains NaN or inf")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logdet_grad_refuses_what_logdet_refuses(bad, message, dtype):
    L = _L.astype(dtype)
    L[1, 0, 4] = bad
    with pytest.raises(ValueError, match=f"^band_logdet: .*{message}"):
        kernels.band_logdet(L)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any division by zero
        with pytest.raises(ValueError, match=f"^band_logdet_grad: .*{message}"):
            kernels.band_logdet_grad(L, np.ones(2, dtype))


def test_logdet_grad_checks_its_weights_and_their_shape():
    with pytest.raises(ValueError, match="^band_logdet_grad: g contains NaN or inf"):
        kernels.band_logdet_grad(_L, np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match=r"^band_logdet_grad: g of shape \(3,\) does not broadcast to \(2,\)"):
        kernels.band_logdet_grad(_L, np.ones(3))
    # check=False skips the scans (the VJP of gvae.ops.band_logdet, whose forward checked L)
    L = _L.copy()
    L[0, 0, 0] = np.inf
    assert kernels.band_logdet_grad(L, np.ones(2), check=False)[0, 0, 0] == 0.0
    expected = np.zeros_like(_L)
    expected[:, 0] = np.array([2.0, -1.0])[:, None] / _L[:, 0]
    np.testing.assert_array_equal(kernels.band_logdet_grad(_L, np.array([2.0, -1.0])), expected)

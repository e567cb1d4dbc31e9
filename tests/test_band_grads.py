"""The gvae.ops band primitives beyond their finite-difference checks (tests/test_op_gradients.py):
nonexistent band slots hold NaN, which must be ignored and get a zero gradient; both arguments' gradients
at once equal each alone; float32 gradients keep their dtype."""
import numpy as np
from hypothesis import given, settings

from gvae.autodiff import value_and_grad
from gvae.ops import band as ops_band
from tests.band_reference import random_factor
from tests.strategies import band_problem


VECTOR_OPS = [ops_band.band_solve_t, ops_band.band_solve, ops_band.band_matvec, ops_band.band_matvec_t]


def _zero_outside_band(op, L, offsets, *rest):
    """The L-gradient is zero (not NaN) in the slots i < offsets[k] that hold NaN."""
    from gvae import ops
    _, gL = value_and_grad(lambda L_: ops.sum(op(L_, offsets, *rest)))(L)
    for k, o in enumerate(offsets):
        assert np.all(gL[..., k, :o] == 0), (op, k)
    assert np.all(np.isfinite(gL))


@settings(deadline=None)
@given(problem=band_problem())
def test_vector_ops_give_zero_gradient_outside_the_band(problem):
    L, offsets, b, _ = problem
    for op in VECTOR_OPS:
        _zero_outside_band(op, L, offsets, b)


@settings(deadline=None)
@given(problem=band_problem())
def test_factor_ops_give_zero_gradient_outside_the_band(problem):
    L, offsets, _, _ = problem
    _zero_outside_band(ops_band.band_trace_inv, L, offsets)
    _zero_outside_band(lambda L_, offs: ops_band.band_logdet(L_), L, offsets)
    _zero_outside_band(ops_band.band_diag_inv, L, offsets)


def test_solve_t_vjp_both_arguments_and_plain_call():
    rng = np.random.default_rng(0)
    offsets = (0, 1, 4, 5, 6)
    L = random_factor(rng, (3,), offsets, 20)
    b = rng.standard_normal((4, 3, 20))
    # outside value_and_grad the ops simply compute
    np.testing.assert_array_equal(ops_band.band_solve_t(L, offsets, b),
                                  __import__("gvae").kernels.band_solve_t(L, offsets, b))
    u = rng.standard_normal((4, 3, 20))
    from gvae import ops
    f = lambda L_, b_: ops.sum(ops_band.band_solve_t(L_, offsets, b_) * u)  # noqa: E731
    _, (gL, gb) = value_and_grad(f, argnums=(0, 1))(L, b)
    _, gL1 = value_and_grad(f, argnums=0)(L, b)
    _, gb1 = value_and_grad(f, argnums=1)(L, b)
    np.testing.assert_allclose(gL, gL1, rtol=1e-14)
    np.testing.assert_allclose(gb, gb1, rtol=1e-14)
    assert gL.shape == L.shape and gb.shape == b.shape


def test_float32_gradients_keep_dtype():
    rng = np.random.default_rng(1)
    offsets = (0, 1, 3)
    L = random_factor(rng, (2,), offsets, 9, dtype=np.float32)
    b = rng.standard_normal((5, 2, 9)).astype(np.float32)
    from gvae import ops
    for op in VECTOR_OPS:
        _, (gL, gb) = value_and_grad(lambda L_, b_: ops.sum(op(L_, offsets, b_)), argnums=(0, 1))(L, b)
        assert gL.dtype == np.float32 and gb.dtype == np.float32
        _, (gL64, gb64) = value_and_grad(lambda L_, b_: ops.sum(op(L_, offsets, b_)), argnums=(0, 1))(
            L.astype(np.float64), b.astype(np.float64))
        np.testing.assert_allclose(gL, gL64, rtol=1e-3, atol=1e-3 * np.abs(gL64).max())
        np.testing.assert_allclose(gb, gb64, rtol=1e-3, atol=1e-3 * np.abs(gb64).max())

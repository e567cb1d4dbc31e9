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


@settings(deadline=None)
@given(problem=band_problem())
def test_band_normal_kl_gives_zero_gradient_outside_the_band(problem):
    L, offsets, mu, _ = problem
    _zero_outside_band(ops_band_kl, L, offsets, mu)


def ops_band_kl(L, offsets, mu):
    from gvae import ops
    return ops.band_normal_kl(L, offsets, mu)


def _composed_kl(L, offsets, mu):
    """The KL as the band families composed it before band_normal_kl: seven primitives."""
    from gvae import ops
    trace = ops.band_trace_inv(L, offsets, check=False)
    return 0.5 * (trace + ops.sum(mu * mu, axis=-1) - mu.shape[-1]) + ops.band_logdet(L, check=False)


def test_band_normal_kl_is_the_composed_kl_bit_for_bit():
    """Values and both gradients equal to the composition it replaced, float32 and float64, with mu of
    the factor's batch (as the model has it) and broadcasting over it."""
    from gvae import ops
    rng = np.random.default_rng(3)
    offsets = (0, 1, 3, 4, 5)
    for dtype in (np.float32, np.float64):
        L = random_factor(rng, (6,), offsets, 16, dtype=dtype)
        for mu in (rng.standard_normal((6, 16)).astype(dtype), rng.standard_normal((2, 6, 16)).astype(dtype)):
            weights = rng.standard_normal(mu.shape[:-1]).astype(dtype)
            fused = value_and_grad(lambda L_, m_: ops.sum(ops.band_normal_kl(L_, offsets, m_, check=False) * weights),
                                   argnums=(0, 1))(L, mu)
            composed = value_and_grad(lambda L_, m_: ops.sum(_composed_kl(L_, offsets, m_) * weights),
                                      argnums=(0, 1))(L, mu)
            np.testing.assert_array_equal(ops.band_normal_kl(L, offsets, mu), _composed_kl(L, offsets, mu))
            np.testing.assert_array_equal(fused[0], composed[0])
            np.testing.assert_array_equal(np.nan_to_num(fused[1][0]), np.nan_to_num(composed[1][0]))
            np.testing.assert_array_equal(fused[1][1], composed[1][1])
            assert fused[1][0].dtype == dtype and fused[1][1].dtype == dtype


def test_band_normal_kl_refuses_a_mean_of_another_length():
    import pytest
    from gvae import ops
    L = random_factor(np.random.default_rng(0), (2,), (0, 1), 5)
    with pytest.raises(ValueError, match="mu has length 4 in its last axis, L has n=5"):
        ops.band_normal_kl(L, (0, 1), np.zeros((2, 4)))


def _composed_factor(raw, mask, floor):
    """The factor as the band families composed it before band_factor: six primitives."""
    from gvae import ops
    diag = ops.softplus(raw[..., :1, :]) + raw.dtype.type(floor)
    return ops.concatenate2(diag, raw[..., 1:, :] * mask, axis=-2)


def test_band_factor_is_the_composed_factor_bit_for_bit():
    from gvae import ops
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        for k in (1, 5):
            raw = (3 * rng.standard_normal((7, k, 16))).astype(dtype)
            mask = (rng.random((k - 1, 16)) < 0.7).astype(dtype)
            weights = rng.standard_normal(raw.shape).astype(dtype)
            fused = value_and_grad(lambda r: ops.sum(ops.band_factor(r, mask, 1e-4) * weights))(raw)
            composed = value_and_grad(lambda r: ops.sum(_composed_factor(r, mask, 1e-4) * weights))(raw)
            np.testing.assert_array_equal(ops.band_factor(raw, mask, 1e-4), _composed_factor(raw, mask, 1e-4))
            np.testing.assert_array_equal(fused[0], composed[0])
            np.testing.assert_array_equal(fused[1], composed[1])
            assert fused[1].dtype == dtype


def test_band_factor_has_no_gradient_for_its_mask():
    import pytest
    from gvae import ops
    raw = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match="no gradient with respect to the mask"):
        value_and_grad(lambda m: ops.sum(ops.band_factor(raw, m, 1e-4)))(np.ones((2, 4)))

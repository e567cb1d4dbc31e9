"""The tape: operators on traced values, dicts of parameters, long chains, argnums, has_aux, unbroadcast,
errors, and the fused dense layer's values (every primitive's gradient: tests/test_op_gradients.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from gvae import ops
from gvae.autodiff import value_and_grad
from gvae.rules.broadcast import unbroadcast
from tests.strategies import arrays


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["linear", "relu", "elu", "tanh", "softplus", "sigmoid"])
@given(data=st.data())
def test_dense_fused_forward(activation, data):
    """The fused layer's values (its gradients: tests/test_op_gradients.py)."""
    din, dout = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    lead = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=4))
    x = data.draw(arrays(lead + (din,)))
    W = data.draw(arrays((din, dout)))
    b = data.draw(arrays((dout,)))
    pre = x @ W + b
    # relu and elu have kinks at zero: keep the pre-activation away from them
    if activation in ("relu", "elu") and np.min(np.abs(pre)) < 1e-3:
        return
    f = lambda x_, W_, b_: ops.dense(x_, W_, b_, activation)  # noqa: E731
    ref = {"linear": pre, "relu": np.maximum(pre, 0), "elu": np.where(pre > 0, pre, np.expm1(pre)),
           "tanh": np.tanh(pre), "softplus": np.logaddexp(0, pre),
           "sigmoid": 1 / (1 + np.exp(-pre))}[activation]
    np.testing.assert_allclose(f(x, W, b), ref, rtol=1e-12, atol=1e-12)


def test_operators_and_dicts():
    p = {"a": np.array([1.0, 2.0]), "b": np.array(3.0)}

    def f(p):
        return ops.sum((p["a"] * p["b"] - 1.0) ** 2 / 2.0 + (-p["a"]))

    value, g = value_and_grad(f)(p)
    a, b = p["a"], p["b"]
    assert value == pytest.approx(np.sum((a * b - 1) ** 2 / 2 - a))
    np.testing.assert_allclose(g["a"], (a * b - 1) * b - 1)
    np.testing.assert_allclose(g["b"], np.sum((a * b - 1) * a))


def test_reflected_operators_with_ndarray_on_left():
    x = np.array([1.0, 2.0])
    _, g = value_and_grad(lambda t: ops.sum(np.array([2.0, 3.0]) * t + np.ones(2) - t))(x)
    np.testing.assert_allclose(g, [1.0, 2.0])


def test_long_chain_is_iterative():
    def f(x):
        for _ in range(20000):
            x = x + 1.0
        return ops.sum(x)
    assert value_and_grad(f)(np.zeros(2))[1].tolist() == [1.0, 1.0]


def test_unused_argument_gets_zero_gradient_and_argnums_tuple():
    value, (ga, gb) = value_and_grad(lambda a, b: ops.sum(a * 2.0), argnums=(0, 1))(np.ones(3), np.ones(2))
    assert value == 6.0 and ga.tolist() == [2.0] * 3 and gb.tolist() == [0.0, 0.0]


def test_errors():
    with pytest.raises(ValueError, match="scalar"):
        value_and_grad(lambda x: x * 2.0)(np.ones(3))
    with pytest.raises(TypeError, match="floating"):
        value_and_grad(lambda x: ops.sum(x))(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="does not depend"):
        value_and_grad(lambda x: 1.0)(np.ones(3))


def test_has_aux():
    (value, aux), g = value_and_grad(lambda x: (ops.sum(x * x), {"x2": x * x}), has_aux=True)(np.ones(2))
    assert value == 2.0 and isinstance(aux["x2"], np.ndarray) and g.tolist() == [2.0, 2.0]


def test_unbroadcast():
    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (3, 1)).tolist() == [[8.0]] * 3
    assert unbroadcast(g, ()).shape == ()


def test_plain_arrays_just_compute():
    np.testing.assert_allclose(ops.softplus(np.array([0.0, 100.0])), [np.log(2.0), 100.0])
    assert ops.softplus(np.ones(2, np.float32)).dtype == np.float32


def test_missing_vjp_is_named():
    from gvae.autodiff import primitive
    floor = primitive(np.floor, name="floor")
    with pytest.raises(TypeError, match="VJP of floor wrt argument 0 not defined"):
        value_and_grad(lambda x: ops.sum(floor(x)))(np.ones(2))


@pytest.mark.parametrize("error", [1e-4, 1e-2])
def test_the_gradient_check_fails_a_wrong_gradient_at_every_step(error):
    """tests/gradcheck.check_vjp tries three steps before it fails: a VJP off by a relative ``error`` (as
    small as 1e-4, ten times its tolerance) matches the difference at none of them; the right one passes."""
    from gvae.autodiff import defvjp, primitive
    from tests.gradcheck import check_vjp

    cube = defvjp(primitive(lambda x: x ** 3, name="cube"), lambda ans, x: lambda g: g * 3 * x * x)
    wrong = defvjp(primitive(lambda x: x ** 3, name="cube"), lambda ans, x: lambda g: g * 3 * x * x * (1 + error))
    x = np.random.default_rng(0).standard_normal((3, 4))
    check_vjp(cube, [x])
    with pytest.raises(AssertionError, match="against the differences"):
        check_vjp(wrong, [x])

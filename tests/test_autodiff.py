"""Every elementwise, reduction, shape and linear-algebra primitive against finite differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from gvae import ops
from gvae.autodiff import value_and_grad, unbroadcast
from tests.gradcheck import check_vjp

floats = st.floats(-3, 3, allow_nan=False, width=64)
positive = st.floats(0.2, 3, allow_nan=False, width=64)


def arrays(shape, elements=floats):
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def broadcast_pair(draw, elements_b=floats):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4))
    a = draw(arrays(shapes.input_shapes[0]))
    b = draw(arrays(shapes.input_shapes[1], elements_b))
    return a, b


BINARY = {"add": (ops.add, floats), "subtract": (ops.subtract, floats),
          "multiply": (ops.multiply, floats), "divide": (ops.divide, positive)}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_broadcasting(name, data):
    op, elements_b = BINARY[name]
    a, b = data.draw(broadcast_pair(elements_b))
    check_vjp(op, [a, b], 0)
    check_vjp(op, [a, b], 1)


@given(a=arrays(hnp.array_shapes(max_dims=3, max_side=4), positive), p=st.floats(-2, 3))
def test_power(a, p):
    check_vjp(lambda x: ops.power(x, p), [a])
    check_vjp(lambda q: ops.power(a, q), [np.array(p)])


UNARY = {"negative": (ops.negative, floats), "square": (ops.square, floats),
         "absolute": (ops.absolute, floats.filter(lambda x: abs(x) > 1e-3)),
         "sqrt": (ops.sqrt, positive), "exp": (ops.exp, floats), "log": (ops.log, positive),
         "log1p": (ops.log1p, positive), "softplus": (ops.softplus, floats),
         "sigmoid": (ops.sigmoid, floats), "tanh": (ops.tanh, floats),
         # kinks at 0 are kept out of the finite-difference window
         "relu": (ops.relu, floats.filter(lambda x: abs(x) > 1e-3)),
         "elu": (ops.elu, floats.filter(lambda x: abs(x) > 1e-3))}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary(name, data):
    op, elements = UNARY[name]
    x = data.draw(arrays(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), elements))
    check_vjp(op, [x])


@st.composite
def array_and_axis(draw):
    x = draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1),
                          st.lists(st.integers(0, x.ndim - 1), min_size=1, unique=True).map(tuple)))
    return x, axis, draw(st.booleans())


@pytest.mark.parametrize("op", [ops.sum, ops.mean, ops.logsumexp], ids=lambda f: f.name)
@given(case=array_and_axis())
def test_reductions(op, case):
    x, axis, keepdims = case
    check_vjp(lambda a: op(a, axis=axis, keepdims=keepdims), [x])


def test_logsumexp_stable():
    x = np.array([1000.0, 1000.0, -np.inf])
    assert ops.logsumexp(x) == pytest.approx(1000 + np.log(2))


@given(data=st.data())
def test_matmul_batched(data):
    m, k, n = data.draw(st.tuples(*[st.integers(1, 4)] * 3))
    batch = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    a = data.draw(arrays(batch + (m, k)))
    b = data.draw(arrays((k, n)))
    check_vjp(ops.matmul, [a, b], 0)
    check_vjp(ops.matmul, [a, b], 1)


@pytest.mark.parametrize("activation", ["linear", "relu", "elu", "tanh", "softplus", "sigmoid"])
@given(data=st.data())
def test_dense_fused(activation, data):
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
    for i in range(3):
        check_vjp(f, [x, W, b], i)


@given(data=st.data())
def test_shape_ops(data):
    x = data.draw(arrays((3, 4)))
    check_vjp(lambda a: ops.reshape(a, (4, 3)), [x])
    check_vjp(lambda a: ops.transpose(a), [x])
    check_vjp(lambda a: ops.transpose(a.reshape(2, 3, 2), (2, 0, 1)), [x])
    check_vjp(lambda a: a[1:, ::2], [x])
    check_vjp(lambda a: a[np.array([0, 0, 2])], [x])  # repeated advanced index accumulates
    y = data.draw(arrays((3, 2)))
    check_vjp(lambda a: ops.concatenate2(a, y, axis=-1), [x])
    check_vjp(lambda b: ops.concatenate2(x, b, axis=-1), [y])
    check_vjp(lambda a: ops.broadcast_to(a, (2, 3, 4)), [x])


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

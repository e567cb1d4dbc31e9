"""Every differentiable primitive in ``gvae.ops.__all__`` against central finite differences
(:func:`tests.gradcheck.check_vjp`, float64), from one table: each op names a strategy that draws its
inputs and the checks to run (function, arguments, which argument). An op added to ``gvae.ops`` without
an entry here fails :func:`test_every_op_has_a_gradient_case` (the pattern of MyGrad's
``backprop_test_factory``)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from gvae import ops
from tests.band_reference import band_from_dense, dense_from_band
from tests.gradcheck import check_vjp
from tests.strategies import array_and_axis, arrays, band_problem, broadcast_pair, floats, off_zero, positive

NOT_DIFFERENTIABLE = {"value_of", "poisson_draw"}  # a traced value's array, a draw: no gradient by design
CASES = {}


def case(*names):
    """Register ``draw_checks(data, name) -> [(fun, args, argnum), ...]`` for the ops ``names``."""
    def register(draw_checks):
        for name in names:
            CASES[name] = draw_checks
        return draw_checks
    return register


@case("add", "subtract", "multiply", "divide")
def _binary(data, name):
    a, b = data.draw(broadcast_pair(positive if name == "divide" else floats))
    op = getattr(ops, name)
    return [(op, [a, b], 0), (op, [a, b], 1)]


UNARY_ELEMENTS = {"sqrt": positive, "log": positive, "log1p": positive, "relu": off_zero, "elu": off_zero,
                  "absolute": off_zero}


@case("negative", "absolute", "square", "sqrt", "exp", "log", "log1p", "softplus", "sigmoid", "tanh", "relu", "elu")
def _unary(data, name):
    x = data.draw(arrays(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), UNARY_ELEMENTS.get(name, floats)))
    return [(getattr(ops, name), [x], 0)]


@case("power")
def _power(data, name):
    a = data.draw(arrays(hnp.array_shapes(max_dims=3, max_side=4), positive))
    p = data.draw(st.floats(-2, 3))
    return [(lambda x: ops.power(x, p), [a], 0), (lambda q: ops.power(a, q), [np.array(p)], 0)]


@case("sum", "mean", "logsumexp")
def _reduction(data, name):
    x, axis, keepdims = data.draw(array_and_axis())
    return [(lambda a: getattr(ops, name)(a, axis=axis, keepdims=keepdims), [x], 0)]


@case("matmul")
def _matmul(data, name):
    m, k, n = data.draw(st.tuples(*[st.integers(1, 4)] * 3))
    batch = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    a, b = data.draw(arrays(batch + (m, k))), data.draw(arrays((k, n)))
    return [(ops.matmul, [a, b], 0), (ops.matmul, [a, b], 1)]


@case("dense")
def _dense(data, name):
    activation = data.draw(st.sampled_from(["linear", "relu", "elu", "tanh", "softplus", "sigmoid"]))
    din, dout = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    lead = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=4))
    x, W, b = data.draw(arrays(lead + (din,))), data.draw(arrays((din, dout))), data.draw(arrays((dout,)))
    # relu and elu have kinks at zero: keep the pre-activation away from them
    if activation in ("relu", "elu") and np.min(np.abs(x @ W + b)) < 1e-3:
        activation = "tanh"
    f = lambda x_, W_, b_: ops.dense(x_, W_, b_, activation)  # noqa: E731
    return [(f, [x, W, b], i) for i in range(3)]


@case("reshape", "transpose", "getitem", "concatenate2", "broadcast_to")
def _shape(data, name):
    x = data.draw(arrays((3, 4)))
    if name == "reshape":
        return [(lambda a: ops.reshape(a, (4, 3)), [x], 0)]
    if name == "transpose":
        return [(ops.transpose, [x], 0), (lambda a: ops.transpose(a.reshape(2, 3, 2), (2, 0, 1)), [x], 0)]
    if name == "getitem":  # basic, and a repeated advanced index whose gradients accumulate
        return [(lambda a: a[1:, ::2], [x], 0), (lambda a: a[np.array([0, 0, 2])], [x], 0)]
    if name == "broadcast_to":
        return [(lambda a: ops.broadcast_to(a, (2, 3, 4)), [x], 0)]
    y = data.draw(arrays((3, 2)))
    return [(lambda a, b: ops.concatenate2(a, b, axis=-1), [x, y], 0),
            (lambda a, b: ops.concatenate2(a, b, axis=-1), [x, y], 1)]


@case("bernoulli_loglik")
def _bernoulli(data, name):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=1, max_dims=3, max_side=4))
    logits = data.draw(arrays(shapes.input_shapes[0]))
    x = (data.draw(arrays(logits.shape[-2:] if logits.ndim > 1 else logits.shape, st.floats(0, 1))) > 0.5)
    return [(lambda l_: ops.bernoulli_loglik(l_, x.astype(np.float64)), [logits], 0)]


@case("categorical_log_prob")
def _categorical(data, name):
    """Logits (*S, *B, C) with labels (*B,), broadcast over the leading sample axes as the VIB's head
    gives them."""
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=1, max_dims=3, max_side=4))
    logits = data.draw(arrays(shapes.input_shapes[0]))
    labels = data.draw(hnp.arrays(np.int64, logits.shape[-2:-1], elements=st.integers(0, logits.shape[-1] - 1)))
    return [(lambda l_: ops.categorical_log_prob(l_, labels), [logits], 0)]


@case("diag_normal_kl")
def _diag_kl(data, name):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    mu, sigma = data.draw(arrays(shape)), data.draw(arrays(shape, positive))
    return [(ops.diag_normal_kl, [mu, sigma], 0), (ops.diag_normal_kl, [mu, sigma], 1)]


@case("log_mean_exp")
def _log_mean_exp(data, name):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-5, 5)))
    return [(lambda a: ops.log_mean_exp(a, axis)[0], [x], 0)]


@case("mmd")
def _mmd(data, name):
    B, M, d = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 4)))
    z, y = data.draw(arrays((B, d))), data.draw(arrays((M, d)))
    kernel = data.draw(st.sampled_from(["imq", "rbf"]))
    return [(lambda a, b: ops.mmd(a, b, kernel), [z, y], 0)]


@case("band_solve_t", "band_solve", "band_matvec_t", "band_matvec")
def _band_vector(data, name):
    L, offsets, b, _ = data.draw(band_problem())
    op = getattr(ops, name)
    return [(op, [L, offsets, b], 0), (op, [L, offsets, b], 2)]


@case("band_logdet", "band_trace_inv", "band_diag_inv")
def _band_factor(data, name):
    L, offsets, _, _ = data.draw(band_problem())
    if name == "band_logdet":
        return [(ops.band_logdet, [L], 0)]
    return [(getattr(ops, name), [L, offsets], 0)]


@case("band_normal_kl")
def _band_kl(data, name):
    """mu broadcasting with the factor's batch, as band_problem's right-hand sides do."""
    L, offsets, mu, _ = data.draw(band_problem())
    return [(ops.band_normal_kl, [L, offsets, mu], 0), (ops.band_normal_kl, [L, offsets, mu], 2)]


@case("band_factor")
def _band_factor_from_raw(data, name):
    raw = data.draw(arrays(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6)), floats))
    mask = (np.random.default_rng(data.draw(st.integers(0, 99))).random((raw.shape[1] - 1, raw.shape[2])) < 0.7)
    floor = data.draw(st.floats(1e-4, 0.5))
    return [(lambda r: ops.band_factor(r, mask.astype(np.float64), floor), [raw], 0)]


@case("band_cholesky")
def _band_cholesky(data, name):
    """A = M M^T + I (M a random band factor) on the full band of M's largest offset, NaN in the slots
    that do not exist."""
    M, offsets, _, seed = data.draw(band_problem())
    full = tuple(range(offsets[-1] + 1))
    D = dense_from_band(np.nan_to_num(M, nan=0.0), offsets)
    A = band_from_dense(D @ np.swapaxes(D, -1, -2) + np.eye(D.shape[-1]), full)
    for k in full[1:]:
        A[..., k, :k] = np.nan
    return [(ops.band_cholesky, [A, full], 0)]


def _spd_and_lower(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    n, batch = data.draw(st.integers(1, 5)), data.draw(st.sampled_from([(), (2,), (2, 2)]))
    A = rng.standard_normal(batch + (n, n))
    L = np.tril(rng.standard_normal(batch + (n, n)) * 0.3)
    L[..., range(n), range(n)] = rng.uniform(0.8, 1.5, batch + (n,))
    return rng, A @ np.swapaxes(A, -1, -2) + n * np.eye(n), L


@case("cholesky")
def _cholesky(data, name):
    """Through the symmetric part of its argument: the gradient is with respect to a symmetric A."""
    _, A, _ = _spd_and_lower(data)
    axes = tuple(range(A.ndim - 2)) + (A.ndim - 1, A.ndim - 2)
    return [(lambda A: ops.cholesky((A + ops.transpose(A, axes)) * 0.5), [A], 0)]


@case("solve_triangular")
def _solve_triangular(data, name):
    rng, _, L = _spd_and_lower(data)
    B = rng.standard_normal(L.shape[:-1] + (data.draw(st.integers(1, 3)),))
    transposed = data.draw(st.booleans())
    return [(lambda L, B: ops.solve_triangular(L, B, transposed), [L, B], k) for k in (0, 1)]


@case("cholesky_logdet")
def _cholesky_logdet(data, name):
    return [(ops.cholesky_logdet, [_spd_and_lower(data)[2]], 0)]


@case("rbf_kernel", "linear_kernel")
def _covariance(data, name):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    N, M, d = (data.draw(st.integers(1, 4)) for _ in range(3))
    X, Z, scales = rng.standard_normal((N, d)), rng.standard_normal((M, d)), rng.uniform(0.5, 2.0, d)
    args = [X, Z, scales] + ([np.array(rng.uniform(0.5, 2.0))] if name == "rbf_kernel" else [])
    return [(getattr(ops, name), args, k) for k in range(len(args))]


@case("gamma_sample", "gamma_log_prob", "poisson_log_prob", "bernoulli_poisson_loglik")
def _gamma_family(data, name):
    """Shapes away from 0 (the inverse CDF's steep region), broadcasting a per-unit parameter."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)))
    alpha, beta = rng.uniform(0.3, 4.0, shape), rng.uniform(0.5, 2.0, shape[1:])
    if name == "gamma_sample":
        u = rng.uniform(0.05, 0.95, shape)
        return [(lambda a, b: ops.gamma_sample(a, b, u), [alpha, beta], k) for k in (0, 1)]
    if name == "gamma_log_prob":
        z = rng.uniform(0.2, 3.0, shape)
        return [(ops.gamma_log_prob, [z, alpha, beta], k) for k in range(3)]
    if name == "bernoulli_poisson_loglik":  # rates from 1e-3 (the log's steep end) up, over a batch of draws
        x = (rng.random(shape[1:]) < 0.5).astype(np.float64)
        rates = np.exp(rng.uniform(np.log(1e-3), np.log(4.0), shape))
        return [(lambda r: ops.bernoulli_poisson_loglik(r, x), [rates], 0)]
    k = rng.poisson(2.0, shape).astype(np.float64)
    return [(lambda r: ops.poisson_log_prob(k, r), [alpha], 0)]


def test_every_op_has_a_gradient_case():
    assert set(ops.__all__) - NOT_DIFFERENTIABLE == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
@settings(deadline=None)
@given(data=st.data(), seed=st.integers(0, 999))
def test_gradient_against_finite_differences(name, data, seed):
    for fun, args, argnum in CASES[name](data, name):
        check_vjp(fun, args, argnum, seed=seed)

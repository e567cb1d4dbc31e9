"""The fused layer, likelihood, KL and optimiser kernels against plain NumPy references."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from gvae import kernels
from gvae.kernels import bernoulli_cpu
from gvae.kernels.cpu import programs

REFERENCE = {
    "linear": lambda h: h, "relu": lambda h: np.maximum(h, 0),
    "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0))), "tanh": np.tanh,
    "softplus": lambda h: np.logaddexp(0, h), "sigmoid": lambda h: 1 / (1 + np.exp(-h)),
}
DERIVATIVE = {
    "linear": lambda h: np.ones_like(h), "relu": lambda h: (h > 0) * 1.0,
    "elu": lambda h: np.where(h > 0, 1, np.exp(np.minimum(h, 0))), "tanh": lambda h: 1 - np.tanh(h) ** 2,
    "softplus": lambda h: 1 / (1 + np.exp(-h)), "sigmoid": lambda h: np.exp(-h) / (1 + np.exp(-h)) ** 2,
}
# float64: the vectorised e^x - 1 is exp(x) - 1 below x = -0.01, relative error < 3e-11 there
# (gvae/kernels/vecmath_cpu.py); Hypothesis found ELU(-0.0101) 2e-12 off, beyond a 1e-12 tolerance.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=3e-11, atol=1e-14)}
# Derivatives read off the output: softplus' 1 - e^-y cancels for small y, multiplying the vectorised
# exp's relative error (~2e-13) by 1/y; float32 rounds the output itself.
GRAD_TOL = {np.float32: dict(rtol=1e-3, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-14)}

shapes = st.tuples(st.integers(1, 40), st.integers(1, 70))
dtypes = st.sampled_from([np.float32, np.float64])


@pytest.mark.parametrize("activation", sorted(REFERENCE))
@given(shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_bias_activation(activation, shape, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    h = (rng.standard_normal(shape) * scale).astype(dtype)
    b = (rng.standard_normal(shape[1]) * scale).astype(dtype)
    pre = h.astype(np.float64) + b.astype(np.float64)
    y = kernels.bias_activation(h.copy(), b, activation)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, REFERENCE[activation](pre), **TOL[dtype])
    g = rng.standard_normal(shape).astype(dtype)
    gh, gb = kernels.bias_activation_grad(g, y, activation)
    ref = g * DERIVATIVE[activation](pre)
    tol = GRAD_TOL[dtype]
    if activation in ("relu", "elu"):
        keep = np.abs(pre) > 1e-6  # the derivative is read off the output: ambiguous at the kink
        np.testing.assert_allclose(gh[keep], ref[keep], **tol)
    else:
        np.testing.assert_allclose(gh, ref, **tol)
    np.testing.assert_allclose(gb, gh.astype(np.float64).sum(0), rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("activation", sorted(REFERENCE))
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1), strided=st.booleans())
def test_activation_without_bias(activation, shape, dtype, seed, strided):
    """The ops' activations: the fused kernels with a zero bias, on arrays of any shape and layout."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    if strided and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]  # not contiguous, same values
    before = x.copy()
    y = kernels.activation(x, activation)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(y, REFERENCE[activation](x.astype(np.float64)), **TOL[dtype])
    g = rng.standard_normal(shape).astype(np.float64)  # cast to y's dtype by the kernel
    gx = kernels.activation_grad(g, y, activation)
    assert gx.dtype == dtype and gx.shape == x.shape
    keep = np.abs(x) > 1e-6  # relu and elu read the derivative off the output: ambiguous at the kink
    ref = g.astype(dtype).astype(np.float64) * DERIVATIVE[activation](x.astype(np.float64))
    np.testing.assert_allclose(gx[keep], ref[keep], **GRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (500, 784)])
def test_the_identity_layers_gradient_is_g_itself_and_its_column_sums(shape, dtype):
    """Through y = h + b, dL/dh is g: returned as g itself (no copy), the bias gradient its column sums; with
    ``out`` given, g's values written there; and recorded, a replay reads g's values then."""
    rng = np.random.default_rng(5)
    g = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    gh, gb = kernels.bias_activation_grad(g, y, "linear")
    assert gh is g
    np.testing.assert_allclose(gb, g.astype(np.float64).sum(0), rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
    out = np.full(shape, np.nan, dtype)
    gh2, gb2 = kernels.bias_activation_grad(g, y, "linear", out=out)
    assert gh2 is out
    np.testing.assert_array_equal(out, g)
    np.testing.assert_array_equal(gb2, gb)
    with programs.recording() as program:
        _, recorded = kernels.bias_activation_grad(g, y, "linear")
    g[...] = -g
    program.run()
    np.testing.assert_array_equal(recorded, -gb)


def test_bias_activation_errors():
    h = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        kernels.bias_activation(h, np.zeros(3, np.float32), "gelu")
    with pytest.raises(TypeError, match="one dtype"):
        kernels.bias_activation(h, np.zeros(3), "relu")
    with pytest.raises(ValueError, match=r"b \(N,\)"):
        kernels.bias_activation(h, np.zeros(4, np.float32), "relu")
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.bias_activation(np.zeros((3, 2), np.float32).T, np.zeros(3, np.float32), "relu")
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.bias_activation(np.zeros((2, 3), np.int64), np.zeros(3, np.int64), "relu")


@given(s=st.integers(1, 3), shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_bernoulli_loglik(s, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((s,) + shape) * 5).astype(dtype)
    x = rng.random(shape).astype(dtype)
    ll, d = kernels.bernoulli_loglik(logits, x, want_grad=True)
    l64 = logits.astype(np.float64)
    ref = np.sum(x * l64 - np.logaddexp(0, l64), axis=-1)
    assert ll.shape == (s, shape[0]) and ll.dtype == dtype
    np.testing.assert_allclose(ll, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)
    np.testing.assert_allclose(d, x - 1 / (1 + np.exp(-l64)), **TOL[dtype])
    assert kernels.bernoulli_loglik(logits, x)[1] is None


def test_bernoulli_extreme_logits_are_finite():
    logits = np.array([[-1e4, 1e4, 0.0]], np.float32)
    x = np.array([[0.0, 1.0, 1.0]], np.float32)
    ll, d = kernels.bernoulli_loglik(logits, x, want_grad=True)
    np.testing.assert_allclose(ll, [-np.log(2)], rtol=1e-6)
    assert np.isfinite(d).all()


@pytest.mark.parametrize("n", [bernoulli_cpu._RUN - 1, bernoulli_cpu._RUN, bernoulli_cpu._RUN + 1,
                               9 * bernoulli_cpu._RUN + 3])
def test_bernoulli_loglik_long_rows(n):
    """Rows whose product of the factors 1 + exp(-|l|) leaves float64's range many times over (logits 0:
    2^n, brought back by powers of two), and a row of logits far below 0, whose terms log(1 + e) are far
    under float32's epsilon beside 1 (float64's product keeps them): against the float64 formula."""
    rng = np.random.default_rng(n)
    zero = np.zeros((2, n))
    x = (rng.random((2, n)) < 0.5).astype(np.float64)
    np.testing.assert_allclose(kernels.bernoulli_loglik(zero, x)[0], -n * np.log(2.0), rtol=1e-13)
    for dtype in (np.float32, np.float64):
        logits = np.concatenate([rng.standard_normal((3, n)) * 20, np.full((1, n), -25.0)]).astype(dtype)
        x = rng.random((4, n)).astype(dtype)
        x[3] = 0  # that row's log-likelihood is -n log(1 + e^-25) alone
        l64 = logits.astype(np.float64)
        ref = np.sum(x * l64 - np.logaddexp(0, l64), axis=-1)
        got = kernels.bernoulli_loglik(logits, x)[0]
        np.testing.assert_allclose(got[:3], ref[:3], rtol=1e-6 if dtype == np.float32 else 1e-13)
        # The product's rounding, about n float64 epsilons absolute, is all that is lost of the tiny terms.
        np.testing.assert_allclose(got[3], ref[3], rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-15 * n)


@given(shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_diag_normal_kl_against_dense_formula(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(shape).astype(dtype)
    sigma = rng.uniform(0.05, 3, shape).astype(dtype)
    kl, (dmu, ds) = kernels.diag_normal_kl(mu, sigma, want_grad=True)
    m, s = mu.astype(np.float64), sigma.astype(np.float64)
    # KL(N(m, S) || N(0, I)) = (tr S + m'm - d - log det S) / 2
    ref = 0.5 * (np.sum(s ** 2 + m ** 2, -1) - shape[1] - np.sum(np.log(s ** 2), -1))
    np.testing.assert_allclose(kl, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)
    np.testing.assert_allclose(dmu, m, **TOL[dtype])
    np.testing.assert_allclose(ds, s - 1 / s, **TOL[dtype])


@given(n=st.integers(1, 50000), dtype=dtypes, step=st.integers(1, 1000), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1.0, 0.25]))
def test_adam_update_matches_textbook(n, dtype, step, seed, scale):
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    m, v = rng.standard_normal(n).astype(dtype), rng.random(n).astype(dtype)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    gs = scale * g.astype(np.float64)
    m_ref = b1 * m + (1 - b1) * gs
    v_ref = b2 * v + (1 - b2) * gs ** 2
    p_ref = p - lr * (m_ref / (1 - b1 ** step)) / (np.sqrt(v_ref / (1 - b2 ** step)) + eps)
    kernels.adam_update(p, g, m, v, lr=lr, beta1=b1, beta2=b2, eps=eps, step=step, scale=scale)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, m_ref, **tol)
    np.testing.assert_allclose(v, v_ref, **tol)
    np.testing.assert_allclose(p, p_ref, **tol)


@given(n=st.integers(1, 50000), dtype=dtypes, decay=st.sampled_from([0.0, 0.5, 0.999]), seed=st.integers(0, 2**32 - 1))
def test_average_update_matches_textbook(n, dtype, decay, seed):
    rng = np.random.default_rng(seed)
    a, p = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    ref = decay * a.astype(np.float64) + (1 - decay) * p
    kernels.average_update(a, p, decay=decay)
    np.testing.assert_allclose(a, ref, **(dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else
                                          dict(rtol=1e-14, atol=1e-15)))


def test_average_update_errors():
    z = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="flat and contiguous"):
        kernels.average_update(z, np.zeros(4, np.float32), decay=0.5)
    with pytest.raises(TypeError, match="same dtype|dtype"):
        kernels.average_update(z, np.zeros(3), decay=0.5)
    for decay in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\)"):
            kernels.average_update(z, z.copy(), decay=decay)


def test_sum_squares():
    g = np.arange(100001, dtype=np.float32) / 1000
    assert kernels.sum_squares(g) == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)), rel=1e-6)


@given(n=st.integers(1, 5000), dtype=dtypes, step=st.integers(1, 1000), seed=st.integers(0, 2**32 - 1),
       clip=st.sampled_from([None, 1e-3, 1e6]), bad=st.sampled_from([None, "loss", "norm"]))
def test_adam_update_guarded_is_adam_update_or_nothing(n, dtype, step, seed, clip, bad):
    """The device-guarded step (its constants and guard read from arrays: what a CUDA graph records)
    gives adam_update's bits for the trainer's clip scale, and writes nothing on a non-finite loss or
    norm."""
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    m, v = rng.standard_normal(n).astype(dtype), rng.random(n).astype(dtype)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    norm2 = kernels.sum_squares_array(g)
    assert norm2.dtype == np.float64 and norm2.shape == (1,) and norm2[0] == kernels.sum_squares(g)
    loss = np.array([1.5], dtype)
    if bad == "loss":
        loss[0] = np.nan
    elif bad == "norm":
        norm2[0] = np.inf
    norm = math.sqrt(norm2[0])
    scale = clip / norm if clip is not None and norm > clip else 1.0
    expected = [x.copy() for x in (p, m, v)]
    if bad is None:
        kernels.adam_update(*expected[:1], g, *expected[1:], lr=lr, beta1=b1, beta2=b2, eps=eps, step=step,
                            scale=scale)
    hyper = np.array(kernels.adam_constants(lr, b1, b2, eps, step, clip))
    kernels.adam_update_guarded(p, g, m, v, hyper=hyper, norm2=norm2, loss=loss, beta1=b1, beta2=b2)
    for got, want in zip((p, m, v), expected):
        assert np.array_equal(got, want)


@given(n=st.integers(1, 20000), dtype=dtypes, step=st.integers(1, 1000), seed=st.integers(0, 2**32 - 1),
       decay=st.sampled_from([0.0, 0.5, 0.999]), bad=st.sampled_from([None, "loss"]))
def test_the_average_in_the_adam_pass_is_the_two_passes(n, dtype, step, seed, decay, bad):
    """adam_update and adam_update_guarded with the Polyak average: the bits of adam_update then
    average_update (n past the pass's chunks of 2,048 and the threads' blocks), and nothing written, the
    average included, on a skipped step."""
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    m, v, a = rng.standard_normal(n).astype(dtype), rng.random(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=step)
    want = [x.copy() for x in (p, m, v, a)]
    kernels.adam_update(*want[:1], g, *want[1:3], scale=0.5, **kw)
    kernels.average_update(want[3], want[0], decay=decay)
    got = [x.copy() for x in (p, m, v, a)]
    kernels.adam_update(*got[:1], g, *got[1:3], scale=0.5, average=got[3], decay=decay, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(got, want))

    norm2, loss = kernels.sum_squares_array(g), np.array([np.nan if bad else 1.5], dtype)
    if bad is None:
        want = [x.copy() for x in (p, m, v, a)]
        kernels.adam_update(*want[:1], g, *want[1:3], scale=1.0, **kw)
        kernels.average_update(want[3], want[0], decay=decay)
    else:
        want = [x.copy() for x in (p, m, v, a)]
    hyper = np.array(kernels.adam_constants(kw["lr"], 0.9, 0.999, 1e-8, step))
    kernels.adam_update_guarded(p, g, m, v, hyper=hyper, norm2=norm2, loss=loss, beta1=0.9, beta2=0.999, average=a,
                                decay=decay)
    assert all(np.array_equal(x, y) for x, y in zip((p, m, v, a), want))


def test_the_average_in_the_adam_pass_refuses_what_does_not_fit():
    z = np.zeros(3, np.float32)
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1)
    with pytest.raises(ValueError, match="decay is the average's; give average too"):
        kernels.adam_update(z, z.copy(), z.copy(), z.copy(), decay=0.5, **kw)
    with pytest.raises(ValueError, match="average must be flat and contiguous with p's shape"):
        kernels.adam_update(z, z.copy(), z.copy(), z.copy(), average=np.zeros(4, np.float32), decay=0.5, **kw)
    with pytest.raises(TypeError, match="dtype"):
        kernels.adam_update(z, z.copy(), z.copy(), z.copy(), average=np.zeros(3), decay=0.5, **kw)
    for decay in (None, 1.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\) with an average"):
            kernels.adam_update(z, z.copy(), z.copy(), z.copy(), average=z.copy(), decay=decay, **kw)


def test_adam_update_guarded_errors():
    z = np.zeros(3, np.float32)
    hyper, norm2, loss = np.array(kernels.adam_constants(1e-3, 0.9, 0.999, 1e-8, 1)), np.zeros(1), np.zeros(1, np.float32)
    kw = dict(beta1=0.9, beta2=0.999)
    with pytest.raises(ValueError, match="hyper must be a contiguous float64 array of 3"):
        kernels.adam_update_guarded(z, z.copy(), z.copy(), z.copy(), hyper=hyper[:2], norm2=norm2, loss=loss, **kw)
    with pytest.raises(ValueError, match="loss must be a contiguous float32 array of 1"):
        kernels.adam_update_guarded(z, z.copy(), z.copy(), z.copy(), hyper=hyper, norm2=norm2, loss=np.zeros(1), **kw)
    with pytest.raises(ValueError, match="step counts from 1"):
        kernels.adam_constants(1e-3, 0.9, 0.999, 1e-8, 0)


def test_adam_errors():
    z = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="flat and contiguous"):
        kernels.adam_update(z, np.zeros(4, np.float32), z.copy(), z.copy(), lr=1, beta1=.9, beta2=.9, eps=1,
                            step=1)
    with pytest.raises(ValueError, match="step counts from 1"):
        kernels.adam_update(z, z.copy(), z.copy(), z.copy(), lr=1, beta1=.9, beta2=.9, eps=1, step=0)


def test_mixed_devices_and_foreign_types_are_refused():
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        kernels.device_of(np.zeros(2), [1.0, 2.0])

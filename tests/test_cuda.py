"""The CUDA kernels against their Numba twins, through the public ``gvae.kernels`` functions (so that the
dispatch on the array type is tested too): the same random inputs as NumPy and as CuPy arrays, float32
and float64, odd sizes and broadcast shapes.

Every test runs twice: on a real GPU (skipped without CuPy or a GPU) and on the host emulation of one
(tests/cuda_emulation: gvae's own *_cuda.py modules under a stand-in ``cupy`` whose kernels are the .cu
sources compiled with g++ and run thread by thread; skipped without a C++ compiler)."""
import sys

import numpy as np
import pytest

from gvae import kernels, ops, value_and_grad
from tests.band_reference import named_offsets, random_factor, random_offsets
from tests.cuda_emulation import emulator, fake_cupy


def _real_cupy():
    """Why no real GPU can run the kernels here, or None."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install cupy-cuda12x or cupy-cuda13x)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001  (CUDARuntimeError without a driver, and the like)
        count = 0
    return None if count else "no CUDA GPU visible to CuPy"


@pytest.fixture(scope="module", autouse=True, params=["emulated", "gpu"])
def cupy_module(request):
    """``sys.modules["cupy"]``, the module every test here reads: the emulated one, or the real one."""
    if request.param == "gpu":
        why = _real_cupy()
        if why:
            pytest.skip(f"{why}: the CUDA kernels cannot run on a GPU")
        yield sys.modules["cupy"]
        return
    why = emulator.unavailable()
    if why:
        pytest.skip(why)
    fake_cupy.precompile()
    with fake_cupy.installed() as module:
        yield module


def _cupy():
    return sys.modules["cupy"]


DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def dev(a):
    return _cupy().asarray(a)


def host(a):
    return _cupy().asnumpy(a)


def close(actual, expected, dtype, rtol=None, scale=None):
    """CUDA result ``actual`` (a CuPy array) against the Numba one, with an absolute tolerance
    relative to the largest magnitude (``scale``) for entries near zero."""
    assert isinstance(actual, _cupy().ndarray), f"a {type(actual).__name__} came back: the work left the GPU"
    actual = host(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    rtol = RTOL[dtype] if rtol is None else rtol
    finite = expected[np.isfinite(expected)]
    scale = (float(np.max(np.abs(finite))) if finite.size else 1.0) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30))


# --------------------------------------------------------------------------------------------------
# Dense layer, densities, optimiser, log-mean-exp
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(kernels.ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (3, 37), (129, 500), (1000, 70)])
def test_bias_activation(activation, shape, dtype):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    h = (rng.standard_normal(shape) * 4).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    y = kernels.bias_activation(h.copy(), b, activation)
    hd = dev(h)
    yd = kernels.bias_activation(hd, dev(b), activation)
    assert yd is hd  # in place
    close(yd, y, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    gh, gb = kernels.bias_activation_grad(g, y, activation)
    ghd, gbd = kernels.bias_activation_grad(dev(g), dev(y), activation)
    close(ghd, gh, dtype)
    close(gbd, gb, dtype, rtol=1e-4 if dtype == np.float32 else 1e-11)  # summed in another order


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,shape", [((), (1, 1)), ((), (5, 784)), ((3,), (7, 33)), ((2, 4), (9, 100))])
@pytest.mark.parametrize("want_grad", [False, True])
def test_bernoulli_loglik(lead, shape, dtype, want_grad):
    rng = np.random.default_rng(len(lead) * 100 + shape[1])
    logits = (rng.standard_normal(lead + shape) * 6).astype(dtype)
    x = rng.random(shape).astype(dtype)
    ll, d = kernels.bernoulli_loglik(logits, x, want_grad=want_grad)
    lld, dd = kernels.bernoulli_loglik(dev(logits), dev(x), want_grad=want_grad)
    close(lld, ll, dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
    if want_grad:
        close(dd, d, dtype)
    else:
        assert dd is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,b,c", [((), 1, 2), ((), 7, 10), ((3,), 5, 4)])
def test_categorical(lead, b, c, dtype):
    rng = np.random.default_rng(b * c)
    logits = (rng.standard_normal(lead + (b, c)) * 5).astype(dtype)
    labels, g = rng.integers(0, c, b), rng.standard_normal(lead + (b,)).astype(dtype)
    log_p, probs = kernels.categorical_log_prob(logits, labels)
    log_pd, probsd = kernels.categorical_log_prob(dev(logits), dev(labels))
    close(log_pd, log_p, dtype)
    close(probsd, probs, dtype)
    close(kernels.categorical_grad(dev(g), dev(labels), probsd), kernels.categorical_grad(g, labels, probs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 16), (100, 33), (2, 5, 64)])
@pytest.mark.parametrize("want_grad", [False, True])
def test_diag_normal_kl(shape, dtype, want_grad):
    rng = np.random.default_rng(shape[-1])
    mu = rng.standard_normal(shape).astype(dtype)
    sigma = rng.uniform(0.05, 3.0, shape).astype(dtype)
    kl, grads = kernels.diag_normal_kl(mu, sigma, want_grad=want_grad)
    kld, gradsd = kernels.diag_normal_kl(dev(mu), dev(sigma), want_grad=want_grad)
    close(kld, kl, dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
    if want_grad:
        close(gradsd[0], grads[0], dtype)
        close(gradsd[1], grads[1], dtype)
    else:
        assert gradsd is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_diag_normal_kl_of_columns_apart(dtype):
    """The head's mean and scale as blocks of its columns: the CPU kernel reads them in place, the CUDA one
    after a copy; the same KL."""
    rng = np.random.default_rng(5)
    head = rng.uniform(0.05, 2.0, (40, 32)).astype(dtype)
    kl, grads = kernels.diag_normal_kl(head[:, :16], head[:, 16:], want_grad=True)
    d = dev(head)
    kld, gradsd = kernels.diag_normal_kl(d[:, :16], d[:, 16:], want_grad=True)
    close(kld, kl, dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
    close(gradsd[0], grads[0], dtype)
    close(gradsd[1], grads[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide"])
def test_arithmetic(op, dtype):
    """The tape's arithmetic (gvae/kernels/arithmetic*.py): the CUDA twins against the CPU's."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 20, 7)).astype(dtype)
    b = rng.uniform(0.5, 2.0, (20, 1)).astype(dtype)
    close(kernels.binary(op, dev(a), dev(b)), kernels.binary(op, a, b), dtype, rtol=0)
    close(kernels.binary(op, dev(a), 0.5), kernels.binary(op, a, 0.5), dtype, rtol=0)
    out = dev(np.zeros_like(a))
    assert kernels.binary(op, dev(a), dev(b), out=out) is out
    close(out, getattr(np, op)(a, b), dtype, rtol=0)
    for axis in [None, 0, (0, 1), -1]:
        close(kernels.sum_axes(dev(a), axis=axis), kernels.sum_axes(a, axis=axis), dtype)
    close(kernels.broadcast_to(dev(b), (4, 20, 7)), np.broadcast_to(b, (4, 20, 7)), dtype, rtol=0)
    dst = dev(np.zeros((2, 20, 7), dtype))
    close(kernels.copy_into(dev(b), dst), np.broadcast_to(b, (2, 20, 7)), dtype, rtol=0)
    for name, x in (("log", b), ("exp", a), ("log1p", b), ("expm1", a), ("sqrt", b), ("absolute", a), ("sign", a),
                    ("heaviside", a)):  # a few ulp
        close(kernels.unary(name, dev(x)), kernels.unary(name, x), dtype, rtol=4 * np.finfo(dtype).eps)


# How a product's operand may lie: (shape of the array made, the view of it taken) for an (r, c) operand:
# C-contiguous, a transposed view (F-contiguous), rows padded (a column slice), and strides neither allows
# (copied once).
LAYOUTS = {"c": (lambda r, c: (r, c), lambda x: x), "f": (lambda r, c: (c, r), lambda x: x.T),
           "padded": (lambda r, c: (r, c + 3), lambda x: x[:, :x.shape[1] - 3]),
           "strided": (lambda r, c: (2 * r, 2 * c), lambda x: x[::2, ::2])}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (3, 5, 2), (100, 784, 500), (37, 1, 9), (1, 16, 1), (0, 4, 3),
                                     (4, 0, 3)])
def test_matmul(M, K, N, dtype):
    """gvae's own cuBLAS GEMM (which a CUDA graph can record) against NumPy in every operand layout, with
    and without ``out``."""
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    for made_a, view_a in LAYOUTS.values():
        for made_b, view_b in LAYOUTS.values():
            base_a, base_b = (rng.standard_normal(made(*shape)).astype(dtype)
                              for made, shape in ((made_a, (M, K)), (made_b, (K, N))))
            a, b = view_a(base_a), view_b(base_b)
            assert a.shape == (M, K) and b.shape == (K, N)
            expected = (a.astype(np.float64) @ b.astype(np.float64)).astype(dtype)
            scale = max(1.0, float(np.abs(expected).max(initial=0)))
            da, db = view_a(dev(base_a)), view_b(dev(base_b))
            close(kernels.matmul(da, db), expected, dtype, scale=scale)
            out = dev(np.full((M, N), np.nan, dtype))
            assert kernels.matmul(da, db, out=out) is out
            close(out, expected, dtype, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 31, 1000, 1_000_003])
def test_sum_squares(n, dtype):
    g = np.random.default_rng(n).standard_normal(n).astype(dtype)
    expected = kernels.sum_squares(g)
    actual = kernels.sum_squares(dev(g))
    assert isinstance(actual, float)
    assert actual == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 257, 100_001])
def test_adam_update(n, dtype):
    rng = np.random.default_rng(n)
    p, m = rng.standard_normal(n).astype(dtype), (rng.standard_normal(n) * 0.1).astype(dtype)
    v = rng.uniform(0, 0.1, n).astype(dtype)
    pd, md, vd = dev(p), dev(m), dev(v)
    for step in (1, 2, 7):
        g = rng.standard_normal(n).astype(dtype)
        kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=step, scale=0.7)
        kernels.adam_update(p, g, m, v, **kw)
        kernels.adam_update(pd, dev(g), md, vd, **kw)
    for a, b in ((pd, p), (md, m), (vd, v)):
        close(a, b, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, d", [(1, 1), (7, 33), (70, 100)])
def test_ar_bernoulli_draw(m, d, dtype):
    """The autoregressive draws (a warp per row) against the Numba twin: the same codes."""
    rng = np.random.default_rng(m * d)
    bias, W, u = (rng.standard_normal((m, d)) * 2).astype(dtype), rng.standard_normal((d, d)).astype(dtype), \
        rng.random((m, d)).astype(dtype)
    expected = kernels.ar_bernoulli_draw(bias, W, u)
    got = kernels.ar_bernoulli_draw(dev(bias), dev(W), dev(u))
    assert isinstance(got, _cupy().ndarray)
    np.testing.assert_array_equal(host(got), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gamma_pieces(dtype):
    """The gamma draws, their implicit derivative, log Gamma and digamma (cupyx.scipy.special) against the
    Numba twins."""
    from gvae.kernels import gamma
    if _cupy() is fake_cupy.cupy:
        pytest.skip("cupyx.scipy.special is not emulated: this twin runs on a GPU only")
    rng = np.random.default_rng(0)
    a, u = rng.uniform(0.3, 5.0, 1000).astype(dtype), rng.uniform(0.02, 0.98, 1000).astype(dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-7
    z = gamma.gamma_inverse_cdf(a, u)
    close(gamma.gamma_inverse_cdf(dev(a), dev(u)), z, dtype, rtol=rtol)
    close(gamma.gamma_draw_shape_grad(dev(a), dev(z)), gamma.gamma_draw_shape_grad(a, z), dtype, rtol=rtol)
    close(gamma.lgamma(dev(a)), gamma.lgamma(a), dtype, rtol=rtol)
    close(gamma.digamma(dev(a)), gamma.digamma(a), dtype, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_draws(dtype):
    """Poisson draws by the inverse CDF (CuPy's elementwise operators) against the Numba twin, draw for draw:
    rates from 0 to past the largest count's reach, and uniforms at the ends."""
    from gvae.kernels import gamma
    rng = np.random.default_rng(1)
    rate = np.concatenate([[0.0, 1e-4, 30.0, 200.0, -1.0, np.inf, 2.0], rng.uniform(0.0, 40.0, 993)]).astype(dtype)
    u = np.concatenate([[0.0, 0.5, 1 - 2 ** -24, 0.999, 0.5, 0.5, 1.5], rng.uniform(0.0, 1.0, 993)]).astype(dtype)
    close(gamma.poisson_draw(dev(rate), dev(u), 80), gamma.poisson_draw(rate, u, 80), dtype, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_linalg(dtype):
    """The Gaussian-process layers' dense algebra (cuSOLVER's Cholesky, cuBLAS's triangular solves) against
    the LAPACK twins; a matrix that is not positive definite named by its batch index."""
    from gvae.kernels import dense_linalg
    if _cupy() is fake_cupy.cupy:
        pytest.skip("cuSOLVER and cupyx.scipy are not emulated: this twin runs on a GPU only")
    rng = np.random.default_rng(0)
    M = rng.standard_normal((3, 2, 9, 9))
    A = (M @ M.swapaxes(-1, -2) + 9 * np.eye(9)).astype(dtype)
    L = dense_linalg.cholesky(dev(A))
    close(L, dense_linalg.cholesky(A), dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
    B = rng.standard_normal((3, 2, 9, 4)).astype(dtype)
    for transposed in (False, True):
        close(dense_linalg.solve_triangular(L, dev(B), transposed),
              dense_linalg.solve_triangular(dense_linalg.cholesky(A), B, transposed), dtype,
              rtol=1e-4 if dtype == np.float32 else 1e-11)
    A[1, 0] = -np.eye(9)
    with pytest.raises(ValueError, match=r"1 of the 6 matrices are not positive definite \(batch indices \[\(1, 0\)\]"):
        dense_linalg.cholesky(dev(A))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 257, 100_001])
def test_adam_update_guarded(n, dtype):
    """The graph-recordable step against its Numba twin: clipped, unclipped, and skipped (non-finite loss
    or norm), with the squared norm left on the device."""
    rng = np.random.default_rng(n)
    p, m = rng.standard_normal(n).astype(dtype), (rng.standard_normal(n) * 0.1).astype(dtype)
    v = rng.uniform(0, 0.1, n).astype(dtype)
    pd, md, vd = dev(p), dev(m), dev(v)
    for step, clip, loss in ((1, None, 2.0), (2, 1e-2, 2.0), (3, None, np.nan), (4, 1e-2, np.inf)):
        g = rng.standard_normal(n).astype(dtype)
        norm2 = kernels.sum_squares_array(dev(g))
        assert isinstance(norm2, _cupy().ndarray) and norm2.shape == (1,)
        hyper = np.array(kernels.adam_constants(1e-3, 0.9, 0.999, 1e-8, step, clip))
        kernels.adam_update_guarded(p, g, m, v, hyper=hyper, norm2=kernels.sum_squares_array(g),
                                    loss=np.array([loss], dtype), beta1=0.9, beta2=0.999)
        kernels.adam_update_guarded(pd, dev(g), md, vd, hyper=dev(hyper), norm2=norm2, loss=dev(np.array([loss], dtype)),
                                    beta1=0.9, beta2=0.999)
    for a, b in ((pd, p), (md, m), (vd, v)):
        close(a, b, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 257, 100_001])
def test_adam_with_the_average(n, dtype):
    """Both Adam kernels with the Polyak average's step in their pass against their Numba twins, a skipped
    guarded step leaving the average too."""
    rng = np.random.default_rng(n)
    p, m = rng.standard_normal(n).astype(dtype), (rng.standard_normal(n) * 0.1).astype(dtype)
    v, a = rng.uniform(0, 0.1, n).astype(dtype), rng.standard_normal(n).astype(dtype)
    pd, md, vd, ad = dev(p), dev(m), dev(v), dev(a)
    for step, loss in ((1, 2.0), (2, np.nan), (3, 2.0)):
        g = rng.standard_normal(n).astype(dtype)
        kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=step, scale=0.7, decay=0.99)
        kernels.adam_update(p, g, m, v, average=a, **kw)
        kernels.adam_update(pd, dev(g), md, vd, average=ad, **kw)
        hyper = np.array(kernels.adam_constants(1e-3, 0.9, 0.999, 1e-8, step, 1e-2))
        kernels.adam_update_guarded(p, g, m, v, hyper=hyper, norm2=kernels.sum_squares_array(g),
                                    loss=np.array([loss], dtype), beta1=0.9, beta2=0.999, average=a, decay=0.9)
        kernels.adam_update_guarded(pd, dev(g), md, vd, hyper=dev(hyper), norm2=kernels.sum_squares_array(dev(g)),
                                    loss=dev(np.array([loss], dtype)), beta1=0.9, beta2=0.999, average=ad, decay=0.9)
    for x, y in ((pd, p), (md, m), (vd, v), (ad, a)):
        close(x, y, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 257, 100_001])
def test_average_update(n, dtype):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(dtype)
    ad = dev(a)
    for decay in (0.0, 0.5, 0.999):
        p = rng.standard_normal(n).astype(dtype)
        kernels.average_update(a, p, decay=decay)
        kernels.average_update(ad, dev(p), decay=decay)
    close(ad, a, dtype, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((1,), -1), ((7, 33), 1), ((7, 33), 0), ((5, 4, 100), 1), ((3, 5000), -1)])
def test_log_mean_exp(shape, axis, dtype):
    rng = np.random.default_rng(shape[-1])
    logw = (rng.standard_normal(shape) * 50 - 300).astype(dtype)
    out, w = kernels.log_mean_exp(logw, axis)
    outd, wd = kernels.log_mean_exp(dev(logw), axis)
    close(outd, out, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
    close(wd, w, dtype, rtol=1e-4 if dtype == np.float32 else 1e-11, scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_mean_exp_special_rows(dtype):
    logw = np.array([[-np.inf, -np.inf, -np.inf], [np.inf, 1.0, 2.0], [1.0, np.nan, 2.0], [0.0, -np.inf, 3.0],
                     [np.nan, -np.inf, -np.inf]], dtype=dtype)
    out, w = kernels.log_mean_exp(logw, 1)
    outd, wd = kernels.log_mean_exp(dev(logw), 1)
    np.testing.assert_allclose(host(outd), out, rtol=1e-6)
    np.testing.assert_allclose(host(wd), w, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Banded factors
# --------------------------------------------------------------------------------------------------

def _band_cases():
    rng = np.random.default_rng(99)
    cases = [((0,), 1), ((0,), 5), ((0, 1), 2), ((0, 1), 37), ((0, 2), 9), ((0, 1, 2), 3), ((0, 3, 4), 17)]
    for n in (12, 30, 49):
        for name in ("grid", "extgrid"):
            offs = named_offsets(name, n)
            if offs is not None:
                cases.append((offs, n))
        cases.append((random_offsets(rng, n, max_k=6), n))
    cases.append(((0, 1, 27, 28, 29), 784))   # the extended grid of a 28 x 28 image
    cases.append(((0, 1, 40, 90), 100))        # a window that does not fit in shared memory
    cases.append(((0, 1, 2, 4, 7, 11, 12), 41))  # K = 7: band_solve's step-by-step kernel (K > KC_MAX)
    cases.append(((0, 2, 3, 5, 6, 9), 23))     # K = 6, no offset 1: the prefetched chunks' widest case
    return cases


BAND_CASES = _band_cases()
# (L batch shape, right-hand side lead shape): the ways the two broadcast
BAND_BATCHES = [((), ()), ((), (5,)), ((3,), ()), ((3,), (4, 3)), ((2, 1), (2, 4)), ((3,), (2, 1, 3)), ((7,), (40, 7))]
VECTOR = ("band_solve_t", "band_solve", "band_matvec", "band_matvec_t")


def _band_rtol(dtype, n):
    return (1e-4 if n < 200 else 5e-4) if dtype == np.float32 else 1e-9


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets,n", BAND_CASES)
def test_band_vector_kernels(offsets, n, dtype):
    rng = np.random.default_rng(n * 13 + len(offsets))
    batches = BAND_BATCHES if n < 200 else BAND_BATCHES[:4]
    for batch, lead in batches:
        L = random_factor(rng, batch, offsets, n, dtype)  # nonexistent slots hold NaN: never read
        b = rng.standard_normal(lead + (n,)).astype(dtype)
        Ld, bd = dev(L), dev(b)
        for name in VECTOR:
            expected = getattr(kernels, name)(L, offsets, b)
            close(getattr(kernels, name)(Ld, offsets, bd), expected, dtype, rtol=_band_rtol(dtype, n))
        # the VJP helper: band-restricted outer products summed over the broadcast samples
        c = rng.standard_normal(lead + (n,)).astype(dtype)
        expected = kernels.band_outer(b, c, offsets, batch, scale=-1.5)
        close(kernels.band_outer(bd, dev(c), offsets, batch, scale=-1.5), expected, dtype,
              rtol=_band_rtol(dtype, n))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets,n", BAND_CASES)
def test_band_factor_kernels(offsets, n, dtype):
    rng = np.random.default_rng(n * 17 + len(offsets))
    for batch in [(), (3,), (2, 3), (70,)] if n < 200 else [(), (5,)]:
        L = random_factor(rng, batch, offsets, n, dtype)
        Ld = dev(L)
        close(kernels.band_logdet(Ld), kernels.band_logdet(L), dtype, rtol=_band_rtol(dtype, n), scale=n)
        close(kernels.band_trace_inv(Ld, offsets), kernels.band_trace_inv(L, offsets), dtype,
              rtol=_band_rtol(dtype, n))
        g = rng.uniform(0.5, 1.5, size=batch).astype(dtype)
        expected = kernels.band_trace_inv_grad(L, offsets, g)
        actual = kernels.band_trace_inv_grad(Ld, offsets, dev(g))
        close(actual, expected, dtype, rtol=_band_rtol(dtype, n))
        for k, o in enumerate(offsets):
            assert np.all(host(actual)[..., k, :o] == 0)
        close(kernels.band_logdet_grad(Ld, dev(g)), kernels.band_logdet_grad(L, g), dtype)
        close(kernels.band_diag_inv(Ld, offsets), kernels.band_diag_inv(L, offsets), dtype,
              rtol=_band_rtol(dtype, n))
        gd = rng.uniform(-1.5, 1.5, size=batch + (n,)).astype(dtype)
        actual = kernels.band_diag_inv_grad(Ld, offsets, dev(gd))
        close(actual, kernels.band_diag_inv_grad(L, offsets, gd), dtype, rtol=_band_rtol(dtype, n))
        for k, o in enumerate(offsets):
            assert np.all(host(actual)[..., k, :o] == 0)


# Chain-free stencils for the gradient's rows of Sigma in segments: grid, extended grid, a wide band (many
# diagonals), and wide windows (w close to n) that no segmentation makes smaller
SEGMENT_CASES = [((0,), 1), ((0, 1, 6), 31), ((0, 1, 5, 6, 7), 31), ((0, 2, 17, 29), 31), ((0, 1, 11), 33),
                 ((0, 1, 10, 11, 12), 33), ((0, 1, 2, 3, 4, 5, 6, 7, 8), 33), ((0, 1, 3), 33), ((0, 1, 2, 3, 4), 33),
                 ((0, 1, 10), 100), ((0, 1, 9, 10, 11), 100), ((0, 1, 2, 3, 17, 18, 19), 100), ((0, 1, 40, 90), 100)]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets,n", SEGMENT_CASES)
def test_band_trace_grad_in_segments(offsets, n, dtype, monkeypatch):
    """With the scratch budget lowered, the gradients keep the rows of Sigma in segments recomputed from
    checkpoints: the same numbers as with every row kept, bit for bit, and as the Numba twins; the
    scratch handed to the kernel is what _grad_scratch counts, within the budget where the least
    segmentation fits it, and below the 2 n W float64 a warp took for the whole band of Sigma and its
    adjoint."""
    from gvae.kernels.band import trace_cuda
    rng = np.random.default_rng(n * 7 + len(offsets))
    L = random_factor(rng, (5,), offsets, n, dtype)
    g = rng.uniform(0.5, 1.5, size=5).astype(dtype)
    gd = rng.uniform(-1.5, 1.5, size=(5, n)).astype(dtype)
    Ld = dev(L)
    W = offsets[-1] + 1
    full = trace_cuda._grad_scratch(n, W, n)
    least = trace_cuda._grad_scratch(n, W, trace_cuda._segment_rows(n, W, 0))
    launches = []
    function = trace_cuda.SOURCE.function

    def recorded(expression, dt):
        fn = function(expression, dt)

        def launch(grid, block, args, **kw):
            if expression.startswith("band_trace_band_grad"):
                launches.append((grid[0] * block[0] // 32, int(args[8]), args[9].size))
            return fn(grid, block, args, **kw)
        return launch

    monkeypatch.setattr(trace_cuda.SOURCE, "function", recorded)
    whole = [kernels.band_trace_inv_grad(Ld, offsets, dev(g)), kernels.band_diag_inv_grad(Ld, offsets, dev(gd))]
    assert [ks for _, ks, _ in launches] == [n, n]
    expected = [kernels.band_trace_inv_grad(L, offsets, g), kernels.band_diag_inv_grad(L, offsets, gd)]
    for budget in (8 * (full - 1), 8 * least, 8):
        monkeypatch.setattr(trace_cuda, "_SCRATCH_BYTES", budget)
        launches.clear()
        actual = [kernels.band_trace_inv_grad(Ld, offsets, dev(g)), kernels.band_diag_inv_grad(Ld, offsets, dev(gd))]
        for a, b, c in zip(actual, whole, expected):
            np.testing.assert_array_equal(host(a), host(b))
            close(a, c, dtype, rtol=_band_rtol(dtype, n))
        assert len(launches) == 2
        for warps, ks, size in launches:
            per_warp = trace_cuda._grad_scratch(n, W, ks)
            assert size == warps * per_warp
            assert per_warp <= (n + W) * W and (per_warp < 2 * n * W or n == 1)
            assert size <= max(budget // 8, least)
            if least < full:  # segments make it smaller: they are taken
                assert ks < n


@pytest.mark.parametrize("offsets", [(0, 1), (0, 1, 5), (0, 2, 7)])
def test_band_chain_and_window_agree(offsets):
    # the chain's O(n) recursion against the general window with an extra zero diagonal
    rng = np.random.default_rng(4)
    L = random_factor(rng, (9,), offsets, 50)
    L3 = np.concatenate([L, np.zeros((9, 1, 50))], axis=1)
    offs3 = offsets + (offsets[-1] + 3,)
    Ld, L3d = dev(L), dev(L3)
    np.testing.assert_allclose(host(kernels.band_trace_inv(Ld, offsets)), host(kernels.band_trace_inv(L3d, offs3)),
                               rtol=1e-12)
    g = dev(np.ones(9))
    np.testing.assert_allclose(host(kernels.band_trace_inv_grad(Ld, offsets, g)),
                               host(kernels.band_trace_inv_grad(L3d, offs3, g))[:, :-1], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(host(kernels.band_diag_inv(Ld, offsets)), host(kernels.band_diag_inv(L3d, offs3)),
                               rtol=1e-12)
    gd = dev(np.random.default_rng(5).standard_normal((9, 50)))
    np.testing.assert_allclose(host(kernels.band_diag_inv_grad(Ld, offsets, gd)),
                               host(kernels.band_diag_inv_grad(L3d, offs3, gd))[:, :-1], rtol=1e-10, atol=1e-14)


def test_band_bad_inputs_are_named():
    rng = np.random.default_rng(0)
    offsets, n = (0, 1, 3), 6
    L = random_factor(rng, (2,), offsets, n)
    b = rng.standard_normal((2, n))
    bad = L.copy()
    bad[1, 0, 4] = 0.0
    for name in VECTOR:
        with pytest.raises(ValueError, match="strictly positive"):
            getattr(kernels, name)(dev(bad), offsets, dev(b))
    with pytest.raises(ValueError, match="strictly positive"):
        kernels.band_trace_inv(dev(bad), offsets)
    with pytest.raises(ValueError, match="strictly positive"):
        kernels.band_logdet(dev(bad))
    bad = L.copy()
    bad[0, 2, 5] = np.nan
    for name in VECTOR:
        with pytest.raises(ValueError, match="L contains NaN or inf"):
            getattr(kernels, name)(dev(bad), offsets, dev(b))
        getattr(kernels, name)(dev(bad), offsets, dev(b), check=False)  # unchecked: no error
    with pytest.raises(ValueError, match="L contains NaN or inf"):
        kernels.band_trace_inv_grad(dev(bad), offsets, dev(np.ones(2)))
    badb = b.copy()
    badb[1, 2] = np.inf
    with pytest.raises(ValueError, match="b contains NaN or inf"):
        kernels.band_solve(dev(L), offsets, dev(badb))


# --------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------

def test_mixed_numpy_and_cupy_raise_type_error():
    rng = np.random.default_rng(1)
    L = random_factor(rng, (2,), (0, 1), 5)
    b = rng.standard_normal((2, 5))
    with pytest.raises(TypeError, match="different devices"):
        kernels.band_solve(L, (0, 1), dev(b))
    with pytest.raises(TypeError, match="different devices"):
        kernels.band_matvec_t(dev(L), (0, 1), b)
    h = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="different devices"):
        kernels.bias_activation(dev(h), np.zeros(3, np.float32), "relu")
    with pytest.raises(TypeError, match="different devices"):
        kernels.bernoulli_loglik(dev(h), h)
    with pytest.raises(TypeError, match="different devices"):
        kernels.adam_update(dev(h[0]), h[0], h[0], h[0], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1)


def test_results_stay_on_the_device():
    rng = np.random.default_rng(2)
    L = dev(random_factor(rng, (3,), (0, 1, 2), 8))
    assert isinstance(kernels.band_solve_t(L, (0, 1, 2), dev(rng.standard_normal((4, 3, 8)))), _cupy().ndarray)
    assert isinstance(kernels.band_trace_inv(L, (0, 1, 2)), _cupy().ndarray)
    assert isinstance(kernels.log_mean_exp(dev(rng.standard_normal((3, 4))))[1], _cupy().ndarray)


def test_value_and_grad_on_cupy_arrays():
    rng = np.random.default_rng(3)
    x = rng.random((4, 10)).astype(np.float32)
    t = rng.random((4, 6)).astype(np.float32)
    params = {"W": (rng.standard_normal((10, 6)) * 0.3).astype(np.float32), "b": np.zeros(6, np.float32),
              "L": random_factor(rng, (4,), (0, 1), 6, np.float32, garbage=0.0)}

    def loss(p, x, t):
        h = ops.dense(x, p["W"], p["b"], "tanh")
        z = ops.band_solve_t(p["L"], (0, 1), h)
        return ops.sum(ops.bernoulli_loglik(z, t)) + ops.sum(ops.band_logdet(p["L"]))

    value, grads = value_and_grad(loss)(params, x, t)
    dparams = {k: dev(v) for k, v in params.items()}
    dvalue, dgrads = value_and_grad(loss)(dparams, dev(x), dev(t))
    assert float(dvalue) == pytest.approx(float(value), rel=1e-4)
    for k in grads:
        close(dgrads[k], grads[k], np.float32, rtol=1e-4)


@pytest.mark.parametrize("offsets,n", [((0, 1), 40), ((0, 1, 4, 5, 6), 40)])
def test_band_flags_count_what_the_numba_twins_count(offsets, n):
    """A kernel's count of non-positive diagonal entries is a sum over warps (warp shuffles, then one
    atomic add per warp): with entries scattered over many warps and blocks, the error names the same
    count as the Numba twin's."""
    rng = np.random.default_rng(6)
    L = random_factor(rng, (70,), offsets, n)
    b = rng.standard_normal((70, n))
    flat = L[:, 0, :].reshape(-1)
    flat[rng.choice(flat.size, 37, replace=False)] = -0.5
    L[:, 0, :] = flat.reshape(70, n)
    calls = {name: (lambda m, name=name: getattr(kernels, name)(m(L), offsets, m(b))) for name in VECTOR}
    calls.update(band_logdet=lambda m: kernels.band_logdet(m(L)),
                 band_trace_inv=lambda m: kernels.band_trace_inv(m(L), offsets),
                 band_diag_inv=lambda m: kernels.band_diag_inv(m(L), offsets))
    for name, call in calls.items():
        with pytest.raises(ValueError, match="strictly positive") as cpu:
            call(np.asarray)
        with pytest.raises(ValueError, match="strictly positive") as gpu:
            call(dev)
        assert str(gpu.value) == str(cpu.value), name


def _spd_band(rng, batch, n, w, dtype):
    """A symmetric positive definite band matrix M M^T + I on the full band (0, ..., w), NaN in the slots
    that do not exist."""
    from tests.band_reference import band_from_dense, dense_from_band
    offsets = (0,) + ((1, w) if w > 1 else (w,) if w else ())
    M = dense_from_band(random_factor(rng, batch, offsets, n, garbage=0.0), offsets)
    A = band_from_dense(M @ np.swapaxes(M, -1, -2) + np.eye(n), tuple(range(w + 1)))
    for k in range(1, w + 1):
        A[..., k, :k] = np.nan
    return A.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,n,w", [((), 1, 0), ((3,), 17, 1), ((2, 35), 16, 5), ((70,), 40, 9)])
def test_band_cholesky(batch, n, w, dtype):
    """The factor and its VJP, against the Numba twins (70 matrices: more than one block of threads)."""
    rng = np.random.default_rng(n + w)
    full = tuple(range(w + 1))
    A = _spd_band(rng, batch, n, w, dtype)
    L = kernels.band_cholesky(A, full)
    Ld = kernels.band_cholesky(dev(A), full)
    close(Ld, L, dtype, rtol=_band_rtol(dtype, n))
    g = rng.standard_normal(L.shape).astype(dtype)
    close(kernels.band_cholesky_grad(Ld, full, dev(g)), kernels.band_cholesky_grad(L, full, g), dtype,
          rtol=_band_rtol(dtype, n) * 10)


def test_band_cholesky_refusals_match_the_numba_twins():
    """Not positive definite (the first failing matrix and row named as on the CPU, the failing rows NaN
    when unchecked) and NaN in A."""
    rng = np.random.default_rng(11)
    A = _spd_band(rng, (4, 5), 12, 3, np.float64)
    A[2, 1, 0, 7] = -40.0
    A[3, 0, 0, 2] = -1.0
    with pytest.raises(ValueError, match="not positive definite") as cpu:
        kernels.band_cholesky(A, (0, 1, 2, 3))
    with pytest.raises(ValueError, match="not positive definite") as gpu:
        kernels.band_cholesky(dev(A), (0, 1, 2, 3))
    assert str(gpu.value) == str(cpu.value)
    unchecked = kernels.band_cholesky(A, (0, 1, 2, 3), check=False)
    close(kernels.band_cholesky(dev(A), (0, 1, 2, 3), check=False), unchecked, np.float64)  # NaN where the CPU's
    assert np.all(np.isnan(unchecked[2, 1, :, 7:])) and np.all(np.isnan(unchecked[3, 0, :3, 2:]))
    A[0, 0, 2, 5] = np.nan
    with pytest.raises(ValueError, match="A contains NaN or inf"):
        kernels.band_cholesky(dev(A), (0, 1, 2, 3))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("B,M,d", [(1, 1, 1), (33, 31, 16), (100, 100, 3), (5, 300, 2)])
def test_mmd(dtype, kernel, B, M, d):
    rng = np.random.default_rng(B + M + d)
    z, y = rng.standard_normal((B, d)).astype(dtype), rng.standard_normal((M, d)).astype(dtype)
    value, grad = kernels.mmd(z, y, kernel, want_grad=True)
    dvalue, dgrad = kernels.mmd(dev(z), dev(y), kernel, want_grad=True)
    close(dvalue, value, dtype, scale=1.0)
    close(dgrad, grad, dtype)
    close(kernels.mmd(dev(z), dev(y), kernel)[0], value, dtype, scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_banded_linalg(dtype):
    """gvae.linalg's six functions on device arrays against the host's, batched: the general solve (its own
    kernel, banded_lu.cu: a batch of 3 with pivoting), and the symmetric ones on the band kernels."""
    from gvae import linalg
    rng = np.random.default_rng(2)
    ab = rng.standard_normal((3, 6, 40)).astype(dtype)  # l = 3, u = 2
    ab[:, 2] += 1.0
    b = rng.standard_normal((3, 40, 2)).astype(dtype)
    spd = (rng.standard_normal((3, 3, 40)) * 0.3).astype(dtype)
    spd[:, 2] = 3.0
    c = linalg.cholesky_banded(spd)
    close(linalg.solve_banded((3, 2), dev(ab), dev(b)), linalg.solve_banded((3, 2), ab, b), dtype, rtol=1e-4)
    close(linalg.matmul_banded((3, 2), dev(ab), dev(b)), linalg.matmul_banded((3, 2), ab, b), dtype)
    close(linalg.solveh_banded(dev(spd), dev(b)), linalg.solveh_banded(spd, b), dtype)
    close(linalg.cholesky_banded(dev(spd)), c, dtype)
    close(linalg.cho_solve_banded((dev(c), False), dev(b)), linalg.cho_solve_banded((c, False), b), dtype)
    close(linalg.logdeth_banded(dev(spd)), linalg.logdeth_banded(spd), dtype)

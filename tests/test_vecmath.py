"""The vectorisable transcendentals of gvae/kernels/vecmath_cpu.py against float64 NumPy, in units in the
last place of the argument's precision: float32 arguments take the float32 implementations, float64 the
float64 ones (one name, chosen by type when a kernel compiles), and outside Numba the plain-Python forms."""
import math
import warnings

import numba
import numpy as np
import pytest

from gvae.kernels.vecmath_cpu import exp_and_sigmoid, exp_nonpos, expm1_nonpos, softplus_and_sigmoid, tanh


@numba.njit
def _apply(x, out):
    for i in range(x.size):
        out[0, i] = exp_nonpos(x[i])
        out[1, i] = expm1_nonpos(x[i])
        sp, sig = softplus_and_sigmoid(x[i])
        out[2, i] = sp
        out[3, i] = sig
        out[4, i] = tanh(x[i])


def _references(x):
    x = x.astype(np.float64)
    neg = np.minimum(x, 0.0)
    return np.stack([np.exp(neg), np.expm1(neg), np.logaddexp(0.0, x), 1.0 / (1.0 + np.exp(-x)), np.tanh(x)])


def _arguments(dtype):
    """Arguments of either sign, |x| up to where e^-|x| is taken as it is (float32: 86.5, float64: 88)."""
    rng = np.random.default_rng(0)
    top = 86.5 if dtype == np.float32 else 87.0
    mags = np.concatenate([np.logspace(-30, np.log10(top), 20000), rng.uniform(0.0, top, 20000), [0.0, 0.5, 1.0]])
    return np.concatenate([-mags, mags]).astype(dtype)


@numba.njit
def _exp_and_sigmoid_beside(x, out):
    for i in range(x.size):
        e, sig = exp_and_sigmoid(x[i])
        out[0, i] = e
        out[1, i] = sig
        out[2, i] = exp_nonpos(-abs(x[i]))
        out[3, i] = softplus_and_sigmoid(x[i])[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_and_sigmoid_is_the_softplus_sigmoid_and_exp(dtype):
    """The Bernoulli likelihood's gradient (exp_and_sigmoid) and the sigmoid activation
    (softplus_and_sigmoid) give the same bits, and e is exp_nonpos(-|x|) bit for bit, NaN and infinities
    included; outside Numba, the plain-Python forms agree to float64's rounding."""
    x = np.concatenate([_arguments(dtype)[::50], [np.nan, np.inf, -np.inf, -0.0, 100.0, -100.0]]).astype(dtype)
    out = np.empty((4, x.size), dtype)
    _exp_and_sigmoid_beside(x, out)
    assert np.array_equal(out[0], out[2], equal_nan=True)
    assert np.array_equal(out[1], out[3], equal_nan=True)
    assert np.allclose(out[1][:-6], 1.0 / (1.0 + np.exp(-x[:-6].astype(np.float64))), rtol=1e-6, atol=0)
    for v in (-3.0, 0.0, 2.5):
        e, sig = exp_and_sigmoid(v)
        assert e == math.exp(-abs(v)) and sig == pytest.approx(1.0 / (1.0 + math.exp(-v)), rel=1e-15)
        assert softplus_and_sigmoid(v)[1] == sig


# float32: ulps of float32. float64: exp's relative error < 2e-13 (about 1000 ulps), and expm1's near
# x = -0.01, where it switches from its Taylor polynomial to exp(x) - 1, 2e-13 / |e^x - 1| < 3e-11;
# tanh is the library's there (math.tanh, 2 ulps from NumPy's at worst).
ULPS = {np.float32: (3.0, 3.0, 3.0, 3.0, 3.0), np.float64: (2000.0, 3e-11 / 2.2e-16, 2000.0, 2000.0, 2.0)}
NAMES = ("exp", "expm1", "softplus", "sigmoid", "tanh")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_numpy_in_ulps(dtype):
    x = _arguments(dtype)
    out = np.empty((5, x.size), dtype)
    _apply(x, out)
    ref = _references(x)
    spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    floor = np.finfo(dtype).tiny  # e^x below the smallest normal number: absolute error only
    err = np.abs(out.astype(np.float64) - ref) / np.maximum(spacing, np.spacing(dtype(floor)))
    assert np.all(np.isfinite(out))
    worst = err.max(axis=1)
    assert np.all(worst <= ULPS[dtype]), dict(zip(NAMES, worst))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edges(dtype):
    x = np.array([0.0, -0.0, -1e-30, -87.5, -1e4, 1e4, np.inf, -np.inf], dtype)
    out = np.empty((5, x.size), dtype)
    _apply(x, out)
    assert out[0, 0] == 1.0 and out[1, 0] == 0.0 and out[1, 2] == dtype(-1e-30)
    assert out[0, 4] < 1e-37 and out[1, 4] == -1.0 and out[3, 4] < 1e-37
    assert out[2, 5] == dtype(1e4) and out[3, 5] == 1.0 and out[2, 4] < 1e-37
    assert out[2, 6] == np.inf and out[3, 6] == 1.0 and out[3, 7] < 1e-37
    assert out[1, 7] == -1.0  # e^-inf - 1, as math.expm1 and CUDA's expm1 give it
    assert out[4, 0] == 0.0 and out[4, 1] == 0.0 and out[4, 2] == dtype(-1e-30)
    assert list(out[4, 4:]) == [-1.0, 1.0, 1.0, -1.0]
    nan = np.full(1, np.nan, dtype)
    out = np.empty((5, 1), dtype)
    _apply(nan, out)
    assert np.isnan(out).all()  # a non-finite input is never hidden


def test_no_float32_result_is_subnormal():
    """Subnormal numbers send the CPU down a slow path (the Bernoulli kernel took 2.5x as long on very
    negative logits): below -86.5 e^x stays at e^-86.5, a normal number, and so do the softplus and the
    sigmoid computed from it (their intermediates too, which this cannot see: vecmath_cpu's docstring)."""
    x = -np.concatenate([np.linspace(40.0, 100.0, 6001), [200.0, 1e4, 1e30, np.inf]]).astype(np.float32)
    out = np.empty((5, x.size), np.float32)
    _apply(x, out)
    tiny = np.finfo(np.float32).tiny
    for name, row in zip(NAMES, out):
        assert np.all((row == 0) | (np.abs(row) >= tiny)), name
    below = x < -86.5
    assert np.all(out[0, below] == out[0, x == -86.5][0]) and out[0, below][0] == pytest.approx(math.exp(-86.5), rel=1e-6)


def test_the_python_forms():
    assert exp_nonpos(-1.0) == math.exp(-1.0) and exp_nonpos(2.0) == 1.0
    assert expm1_nonpos(-1e-3) == math.expm1(-1e-3) and expm1_nonpos(1.0) == 0.0
    sp, sig = softplus_and_sigmoid(-3.0)
    assert sp == pytest.approx(math.log1p(math.exp(-3.0)), rel=1e-15) and sig == pytest.approx(1 / (1 + math.exp(3.0)))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_that_call_them_twice_compile_without_numba_warnings(dtype):
    """The helpers are inlined into every call site (the Bernoulli kernel has two); Numba's IR inliner
    warned (NumbaIRAssumptionWarning, 32 of them on a first ``gvae train``) when an inlined body held a
    conditional expression or a loop. A fresh function, so that it compiles here, not from the cache."""
    def twice(x, out, first):
        for i in range(x.size):
            if first:
                sp, sig = softplus_and_sigmoid(x[i])
                out[0, i] = sp + exp_nonpos(x[i])
                out[1, i] = sig + expm1_nonpos(x[i])
            else:
                out[0, i] = softplus_and_sigmoid(x[i])[0] + exp_nonpos(x[i])
                out[1, i] = expm1_nonpos(x[i])
    x = np.linspace(-30.0, 30.0, 61).astype(dtype)
    out = np.empty((2, x.size), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", numba.core.errors.NumbaIRAssumptionWarning)
        numba.njit(twice)(x, out, True)
    np.testing.assert_allclose(out[0], np.logaddexp(0.0, x) + np.exp(np.minimum(x, 0.0)), rtol=1e-5)


def test_a_changed_helper_drops_the_whole_kernel_cache(tmp_path):
    # Numba would keep a cached kernel whose helper (inlined from another file) changed: the cache is one unit.
    from gvae.kernels.cpu.compile_cache import drop_stale_cache
    kernels, band = tmp_path / "kernels", tmp_path / "kernels" / "band"
    for folder in (kernels, band):
        (folder / "__pycache__").mkdir(parents=True)
    (kernels / "vecmath_cpu.py").write_text("A = 1\n")
    (band / "common_cpu.py").write_text("B = 1\n")

    def cached():
        for folder in (kernels, band):
            (folder / "__pycache__" / "k._f-1.py311.nbi").write_text("index")
            (folder / "__pycache__" / "k._f-1.py311.0.nbc").write_text("code")
            (folder / "__pycache__" / "k.cpython-311.pyc").write_text("bytecode")

    cached()
    assert drop_stale_cache((kernels, band)) == 4  # nothing recorded yet: of an unknown version
    cached()
    assert drop_stale_cache((kernels, band)) == 0  # unchanged sources keep their kernels
    for changed in (kernels / "vecmath_cpu.py", band / "common_cpu.py"):
        changed.write_text(changed.read_text() + "C = 2\n")
        assert drop_stale_cache((kernels, band)) == 4
        assert sorted(p.name for p in (kernels / "__pycache__").iterdir() if not p.name.startswith(".")) == \
            ["gvae-kernels.sha256", "k.cpython-311.pyc"]
        cached()

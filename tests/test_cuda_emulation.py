"""The host emulation of CUDA (tests/cuda_emulation) itself, and gvae's kernels at launch shapes that
their *_cuda.py modules never choose: other block sizes, and sizes around a warp (n = 1, 31, 33).

The first half plants the faults a GPU would punish in small kernels of their own and checks that the
emulator shows or stops them: a barrier left out (a read of shared memory not yet written), a barrier
that can never complete, a shuffle after a lane exited, a write past a buffer, a scalar or an array of
the wrong type. The second half launches gvae's kernels directly (the
RawModule and name expressions of their CudaSource, the configuration chosen here) and compares them
with the Numba kernels of the same name, called on the same canonical layouts."""
import importlib
import sys

import numpy as np
import pytest

from gvae.kernels import backend
from gvae.kernels.cuda import build as cuda_build
from gvae.kernels.activations import CODES
from gvae.kernels.band.common_cuda import KC_MAX
from tests.band_reference import named_offsets, random_factor
from tests.cuda_emulation import emulator, fake_cupy
from tests.fake_device import band_inputs

pytestmark = pytest.mark.skipif(emulator.unavailable() is not None, reason=str(emulator.unavailable()))


@pytest.fixture(scope="module")
def cp():
    fake_cupy.precompile()
    with fake_cupy.installed() as module:
        yield module


_PLANTED_KERNELS = ["block_total", "divergent_barrier", "early_exit_shuffle", "write_past", "butterfly"]


def _numba(name, *args):
    """The CPU (Numba) kernel ``name`` on the arguments as its front hands them over: inputs read-only
    (tests/fake_device.band_inputs), so that no second, writable-input compilation is made for tests."""
    return backend.implementation(name)(*band_inputs(args))


def _kernel(cp, code, expression):
    """A kernel of ``code`` (every one of its kernels compiled together: one build, cached on disk)."""
    return cp.RawModule(code=code, options=("--std=c++17",), name_expressions=_PLANTED_KERNELS).get_function(expression)


# --------------------------------------------------------------------------------------------------
# Planted faults
# --------------------------------------------------------------------------------------------------

_BLOCK_SUM = r"""
__global__ void block_total(const float* x, float* out, int n, int skip_sync) {
    __shared__ float part[256];
    part[threadIdx.x] = threadIdx.x < n ? x[threadIdx.x] : 0.0f;
    if (!skip_sync) __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int i = 0; i < blockDim.x; ++i) s += part[i];
        out[blockIdx.x] = s;
    }
}
__global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) __syncwarp(); else __syncthreads();
    out[threadIdx.x] = 1.0f;
}
__global__ void early_exit_shuffle(float* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
__global__ void write_past(float* out, int n) { out[n + threadIdx.x] = 0.0f; }
__global__ void butterfly(const double* x, double* out) {
    double v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
"""


def test_syncthreads_is_a_barrier_and_its_absence_shows(cp):
    x = cp.asarray(np.arange(256, dtype=np.float32))
    out = cp.empty(3, dtype=np.float32)
    _kernel(cp, _BLOCK_SUM, "block_total")((3,), (256,), (x, out, np.int32(256), np.int32(0)))
    assert np.all(cp.asnumpy(out) == np.arange(256).sum())
    # without the barrier thread 0 sums before the others have written: the NaN fill shows through
    _kernel(cp, _BLOCK_SUM, "block_total")((1,), (256,), (x, out, np.int32(256), np.int32(1)))
    assert np.isnan(cp.asnumpy(out)[0])


def test_a_barrier_not_all_threads_reach_is_a_deadlock(cp):
    # (a thread that exits no longer counts at __syncthreads, as on the hardware: only a wait that can
    # never end is a deadlock)
    with pytest.raises(RuntimeError, match="deadlock: 16 threads wait at __syncthreads and 16 at a warp"):
        _kernel(cp, _BLOCK_SUM, "divergent_barrier")((1,), (32,), (cp.empty(32, dtype=np.float32),))


def test_a_shuffle_after_a_lane_exited_is_refused(cp):
    with pytest.raises(RuntimeError, match="a lane exited while others of its warp wait"):
        _kernel(cp, _BLOCK_SUM, "early_exit_shuffle")((1,), (32,), (cp.empty(32, dtype=np.float32),))


def test_a_write_past_a_buffer_is_caught(cp):
    out = cp.empty(10, dtype=np.float32)
    with pytest.raises(RuntimeError, match="wrote outside a buffer"):
        _kernel(cp, _BLOCK_SUM, "write_past")((1,), (1,), (out, np.int32(10)))


def _mappings():
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts the lines of Linux's /proc/self/maps")
def test_launches_leave_no_mappings_behind(cp):
    # Each emulated library has an emulator of its own; stacks that one kept mapped after its launches
    # (a guard page per thread splits a mapping in two) added ~2,000 mappings per library, and a test
    # process that loads dozens reached vm.max_map_count, where XLA's compiler crashed on a failed mmap.
    kernels = [_kernel(cp, _BLOCK_SUM + f"\n// variant {k} of test_launches_leave_no_mappings_behind\n",
                       "butterfly") for k in range(3)]
    x, out = cp.asarray(np.ones(1024)), cp.empty(1024)
    before = _mappings()
    for kernel in kernels:
        kernel((1,), (1024,), (x, out))
    assert np.all(cp.asnumpy(out) == 32.0)
    assert _mappings() - before < 16


def test_butterfly_shuffle_sums_each_warp(cp):
    x = np.random.default_rng(0).standard_normal(128)
    out = cp.empty(128)
    _kernel(cp, _BLOCK_SUM, "butterfly")((2,), (64,), (cp.asarray(x), out))
    np.testing.assert_allclose(cp.asnumpy(out), np.repeat(x.reshape(4, 32).sum(1), 32), rtol=1e-14)


@pytest.mark.parametrize("bad,message", [(np.int64(10), "a long long passed where the kernel takes int"),
                                         (10, "a long long passed where the kernel takes int"),
                                         (10.0, "a double passed where the kernel takes int")])
def test_scalars_must_have_the_kernels_type(cp, bad, message):
    # CuPy passes a Python int as 8 bytes and converts nothing: the emulator refuses what a GPU misreads
    with pytest.raises(TypeError, match=message):
        _kernel(cp, _BLOCK_SUM, "write_past")((1,), (1,), (cp.empty(10, dtype=np.float32), bad))


def test_arrays_must_have_the_kernels_type(cp):
    with pytest.raises(TypeError, match="a float64 array passed where the kernel takes float"):
        _kernel(cp, _BLOCK_SUM, "write_past")((1,), (1,), (cp.empty(10), np.int32(0)))


# --------------------------------------------------------------------------------------------------
# gvae's kernels at other launch shapes, against the Numba kernels
# --------------------------------------------------------------------------------------------------

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 3e-5, np.float64: 1e-12}


def _fn(filename, expression, dtype):
    """The kernel ``expression`` of gvae's CUDA source ``filename``, fetched as its *_cuda module does."""
    for name in backend.cuda_modules():
        importlib.import_module(name)
    return cuda_build.SOURCES[filename].function(expression, dtype)


def _close(actual, expected, dtype, rtol=None):
    actual = fake_cupy.cupy.asnumpy(actual)
    rtol = TOL[dtype] if rtol is None else rtol
    scale = max(float(np.max(np.abs(expected))) if expected.size else 1.0, 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [32, 96, 1024])
def test_row_kernels_at_other_block_sizes(cp, block, dtype):
    rng = np.random.default_rng(block)
    m, n = 33, 31
    logw = (rng.standard_normal((m, n)) * 3).astype(dtype)
    out, w = np.empty(m, dtype), np.empty((m, n), dtype)
    backend.implementation("log_mean_exp")(logw[:, :, None], out[:, None], w[:, :, None])
    outd, wd = cp.empty(m, dtype=dtype), cp.empty((m, n), dtype=dtype)
    grid = (3,)
    _fn("logmeanexp.cu", "log_mean_exp<{T}>", dtype)(
        grid, (block,), (cp.asarray(logw), outd, wd, np.int32(m), np.int32(n)))
    _close(outd, out, dtype)
    _close(wd, w, dtype)

    x = rng.random((3, n)).astype(dtype)
    dl = np.empty_like(logw)
    expected = backend.implementation("bernoulli_loglik")(logw, x, dl)
    outd, dld = cp.empty(m, dtype=dtype), cp.empty((m, n), dtype=dtype)
    _fn("bernoulli.cu", "bernoulli_loglik<{T}, true>", dtype)(
        grid, (block,), (cp.asarray(logw), cp.asarray(x), outd, dld, np.int32(m), np.int32(n), np.int32(3)))
    _close(outd, expected, dtype)
    _close(dld, dl, dtype)

    sigma = rng.uniform(0.1, 2.0, (m, n)).astype(dtype)
    dmu, ds = np.empty_like(sigma), np.empty_like(sigma)
    expected = backend.implementation("diag_normal_kl")(logw, sigma, dmu, ds)
    outd, dmud, dsd = cp.empty(m, dtype=dtype), cp.empty((m, n), dtype=dtype), cp.empty((m, n), dtype=dtype)
    _fn("gauss_kl.cu", "diag_normal_kl<{T}, true>", dtype)(
        grid, (block,), (cp.asarray(logw), cp.asarray(sigma), outd, dmud, dsd, np.int32(m), np.int32(n)))
    _close(outd, expected, dtype)
    _close(dmud, dmu, dtype)
    _close(dsd, ds, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [32, 64, 1024])
def test_adam_and_norm_at_other_block_sizes(cp, block, dtype):
    rng = np.random.default_rng(block)
    n = 1000 + 33
    g = rng.standard_normal(n).astype(dtype)
    partial, total = cp.empty(5, dtype=np.float64), cp.empty(1, dtype=np.float64)
    _fn("adam.cu", "sum_squares_partial<{T}>", dtype)((5,), (block,), (cp.asarray(g), partial, np.int64(n)))
    _fn("adam.cu", "sum_partials", dtype)((1,), (block,), (partial, total, np.int32(5)))
    assert float(total[0]) == pytest.approx(backend.implementation("sum_squares")(g), rel=1e-6)

    p, m, v = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype), rng.random(n).astype(dtype)
    avg = rng.standard_normal(n).astype(dtype)
    pd, md, vd, avg_d = cp.asarray(p), cp.asarray(m), cp.asarray(v), cp.asarray(avg)
    c1, c2 = 1 - 0.9 ** 3, 1 - 0.999 ** 3
    t = np.dtype(dtype).type
    for averaged in (0, 1):  # the pass alone (its a never read: p stands in), then with the average's step
        backend.implementation("adam_update")(p, g, m, v, 1e-3 * np.sqrt(c2) / c1, 1e-8 * np.sqrt(c2), 0.9, 0.999, 0.5,
                                              avg if averaged else None, 0.99)
        _fn("adam.cu", "adam_update<{T}>", dtype)(
            (3,), (block,), (pd, cp.asarray(g), md, vd, avg_d if averaged else pd, t(1e-3 * np.sqrt(c2) / c1),
                             t(1e-8 * np.sqrt(c2)), t(0.9), t(0.999), t(0.1), t(0.001), t(0.5), t(0.99), t(1 - 0.99),
                             np.int32(averaged), np.int64(n)))
        for a, b in ((pd, p), (md, m), (vd, v), (avg_d, avg)):
            _close(a, b, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)

    backend.implementation("average_update")(avg, p, 0.999)
    _fn("adam.cu", "average_update<{T}>", dtype)((3,), (block,), (avg_d, cp.asarray(p), t(0.999), t(1 - 0.999),
                                                                   np.int64(n)))
    _close(avg_d, avg, dtype, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [(1, 1), (7, 3), (32, 8), (33, 31)])
def test_bias_activation_forward_at_other_block_shapes(cp, block, dtype):
    rng = np.random.default_rng(sum(block))
    h = rng.standard_normal((31, 33)).astype(dtype)
    b = rng.standard_normal(33).astype(dtype)
    for name, code in CODES.items():
        expected = h.copy()
        backend.implementation("bias_act_forward")(expected, b, name)
        hd = cp.asarray(h)
        _fn("activation.cu", f"bias_act_forward<{{T}}, {code}>", dtype)(
            (-(-33 // block[0]), 2), block, (hd, cp.asarray(b), np.int32(31), np.int32(33)))
        _close(hd, expected, dtype)




@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [1, 32, 256])
def test_the_identity_layers_column_sums_at_other_block_sizes(cp, block, dtype):
    """The identity's backward on CUDA is column_sum over g's rows: the Numba kernel's sums-only path."""
    rng = np.random.default_rng(block)
    g = rng.standard_normal((31, 33)).astype(dtype)
    expected = backend.implementation("bias_act_backward")(g, g, "linear", g)
    out = cp.empty(33, dtype)
    _fn("activation.cu", "column_sum<{T}>", dtype)((-(-33 // block),), (block,), (cp.asarray(g), out, np.int32(31),
                                                                                np.int32(33)))
    _close(out, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 31, 33])
@pytest.mark.parametrize("block", [32, 1024])
def test_band_kernels_at_other_block_sizes(cp, n, block, dtype):
    rng = np.random.default_rng(n)
    offsets = tuple(o for o in (named_offsets("grid", n) or (0, 1, 3)) if o < n)
    L = random_factor(rng, (3,), offsets, n, dtype)
    F, K = L.shape[:2]
    S = 5
    x = rng.standard_normal((S, F, n)).astype(dtype)
    offs = cp.asarray(np.array(offsets, dtype=np.int32))
    Ld, xd = cp.asarray(L), cp.asarray(x)
    sizes = tuple(np.int32(v) for v in (F, K, S, n))
    grid = (2,)
    for expression, name in (("band_matvec<{T}, false>", "band_matvec"), ("band_matvec<{T}, true>", "band_matvec_t")):
        expected = np.empty_like(x)
        _numba(name, L, np.array(offsets), x, expected)
        out, flags = cp.empty(x.shape, dtype=dtype), cp.zeros(2)
        _fn("band/product.cu", expression, dtype)(grid, (block,), (Ld, offs, xd, out, *sizes, flags))
        _close(out, expected, dtype, rtol=1e-4 if dtype == np.float32 else 1e-12)
    # band_solve with K at compile time (prefetched chunks) and without it (every step alike), each against Numba
    for expression, name in [(f"band_solve<{{T}}, {tr}, {kc}>", name) for tr, name in
                             (("false", "band_solve"), ("true", "band_solve_t")) for kc in (0, K)]:
        expected = np.empty_like(x)
        _numba(name, L, np.array(offsets), x, expected)
        out, flags = cp.empty(x.shape, dtype=dtype), cp.zeros(2)
        _fn("band/substitution.cu", expression, dtype)((1,), (block,), (Ld, offs, xd, out, *sizes, flags))
        _close(out, expected, dtype, rtol=1e-4 if dtype == np.float32 else 1e-12)
    c = rng.standard_normal(x.shape).astype(dtype)
    expected = np.empty((2, F, K, n), dtype)
    _numba("band_outer", x, c, np.array(offsets), -1.5, expected)
    out = cp.empty(expected.shape, dtype=dtype)
    _fn("band/product.cu", "band_outer<{T}>", dtype)(
        grid, (block,), (xd, cp.asarray(c), offs, dtype(-1.5), out, np.int32(2), *(np.int32(v) for v in (F, K, S, n))))
    _close(out, expected, dtype, rtol=1e-4 if dtype == np.float32 else 1e-12)
    expected = np.empty(F, dtype)
    _numba("band_logdet", L, expected)
    out, flags = cp.empty(F, dtype=dtype), cp.zeros(2)
    _fn("band/logdet.cu", "band_logdet<{T}>", dtype)(
        grid, (block,), (Ld, out, np.int32(F), np.int32(K), np.int32(n), flags))
    _close(out, expected, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("warps", [1, 3])
@pytest.mark.parametrize("diag", [False, True])
@pytest.mark.parametrize("offsets,n", [((0, 1, 2, 5), 33), ((0, 3), 32), ((0, 1, 34, 35), 71)])
def test_band_trace_window_at_other_warp_counts(cp, warps, diag, offsets, n, dtype):
    """band_trace_window at warp counts trace_cuda.py never picks, its window in shared and in global
    memory, with K at compile time (entries loaded a chunk ahead, taken by shuffle) and without: against
    the Numba twins, and the two bit for bit. n a chunk of 32 steps, one past it and two past it with a
    ragged end; a window wider than the warp (W = 36: two columns a lane)."""
    rng = np.random.default_rng(warps + n)
    L = random_factor(rng, (4,), offsets, n, dtype)
    F, K, n = L.shape
    expected = np.empty((F, n) if diag else F, dtype)
    _numba("band_diag_inv" if diag else "band_trace_inv", L, np.array(offsets), expected)
    W = offsets[-1] + 1
    flag = "true" if diag else "false"
    results = {}
    for shared in ("true", "false"):
        for kc in (K, 0):
            out, flags = cp.empty(expected.shape, dtype=dtype), cp.zeros(2)
            scratch = cp.empty(2 * 32 * warps * (W * W + W))
            _fn("band/trace.cu", f"band_trace_window<{{T}}, {shared}, {flag}, {kc}>", dtype)(
                (2,), (32 * warps,), (cp.asarray(L), cp.asarray(np.array(offsets, np.int32)), out, np.int32(F),
                                      np.int32(K), np.int32(n), scratch, flags), shared_mem=warps * 8 * (W * W + W))
            _close(out, expected, dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
            results[shared, kc] = cp.asnumpy(out)
    first = results["true", K]
    for key, value in results.items():
        np.testing.assert_array_equal(value, first, err_msg=f"shared={key[0]}, KC={key[1]}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets,n", [((0, 1, 6), 31), ((0, 1, 10, 11, 12), 33), ((0, 1, 2, 3, 17, 18, 19), 100)])
def test_band_trace_grad_at_every_segment_length(cp, offsets, n, dtype):
    """band_trace_band_grad with segments of ks rows that trace_cuda.py never picks (fewer rows than w,
    where the rows kept below a segment overlap its own, and a ragged last segment), 1 and 3 warps a
    block over 7 factors (each warp's scratch reused), the adjoints' ring in shared and in global memory,
    K at compile time (where K <= KC_MAX) and not: bit for bit the result with every row kept, and the
    Numba twins'. The scratch is exactly _grad_scratch per warp: the guard bands catch a write past it and
    a read past it gives NaN."""
    from gvae.kernels.band import trace_cuda
    rng = np.random.default_rng(n)
    L = random_factor(rng, (7,), offsets, n, dtype)
    F, K, _ = L.shape
    W = offsets[-1] + 1
    w = W - 1
    offs = cp.asarray(np.array(offsets, np.int32))
    Ld = cp.asarray(L)
    for G in (1, n):
        g = rng.uniform(-1.5, 1.5, size=(F, G)).astype(dtype)
        expected = np.empty_like(L)
        _numba("band_diag_inv_grad" if G > 1 else "band_trace_inv_grad", L, np.array(offsets),
               g if G > 1 else g[:, 0], expected)
        gd = cp.asarray(g)
        whole = None
        for ks in (n, 1, 2, w - 1, w, w + 1, -(-n // 3)):
            known = K if K <= KC_MAX else 0
            for warps, shared, kc in ((1, "true", known), (3, "false", known), (3, "true", 0), (1, "false", 0)):
                out, flags = cp.empty(L.shape, dtype=dtype), cp.zeros(2)
                scratch = cp.empty(2 * warps * trace_cuda._grad_scratch(n, W, ks))
                _fn("band/trace.cu", f"band_trace_band_grad<{{T}}, {shared}, {kc}>", dtype)(
                    (2,), (32 * warps,), (Ld, offs, gd, out, np.int32(F), np.int32(K), np.int32(n), np.int32(G),
                                          np.int32(ks), scratch, flags),
                    shared_mem=8 * W * W * warps if shared == "true" else 0)
                if whole is None:
                    whole = cp.asnumpy(out)
                    _close(out, expected, dtype, rtol=1e-4 if dtype == np.float32 else 1e-11)
                np.testing.assert_array_equal(cp.asnumpy(out), whole,
                                              err_msg=f"ks={ks}, warps={warps}, shared={shared}, KC={kc}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grid,block", [((1,), (32,)), ((3,), (64,))])
def test_band_cholesky_grid_stride(cp, grid, block, dtype):
    """band_cholesky and its VJP with fewer threads than matrices (each thread takes several, grid-stride),
    against the Numba twins; the unused slots of both outputs are zeroed."""
    from tests.band_reference import band_from_dense, dense_from_band
    rng = np.random.default_rng(block[0])
    n, w = 13, 4
    M = dense_from_band(random_factor(rng, (70,), (0, 1, 4), n, garbage=0.0), (0, 1, 4))
    A = band_from_dense(M @ np.swapaxes(M, -1, -2) + np.eye(n), tuple(range(w + 1))).astype(dtype)
    F, K = A.shape[:2]
    sizes = (np.int32(F), np.int32(K), np.int32(n))
    L = np.empty_like(A)
    _numba("band_cholesky", A, L)
    out, flags = cp.full(A.shape, np.nan, dtype=dtype), cp.zeros(2)
    _fn("band/cholesky.cu", "band_cholesky<{T}>", dtype)(grid, block, (cp.asarray(A), out, *sizes, flags))
    _close(out, L, dtype)
    g = rng.standard_normal(A.shape)
    expected = np.empty_like(A)
    _numba("band_cholesky_grad", L, g.astype(dtype), expected)
    gA, flags = cp.full(A.shape, np.nan, dtype=dtype), cp.zeros(2)
    G = cp.asarray(g.astype(dtype).astype(np.float64))  # the launcher's float64 scratch copy of g
    _fn("band/cholesky.cu", "band_cholesky_grad<{T}>", dtype)(grid, block, (cp.asarray(L), G, gA, *sizes, flags))
    _close(gA, expected, dtype, rtol=1e-4 if dtype == np.float32 else 1e-11)


def test_trace_grad_scratch_budget_follows_the_device_memory(cp, monkeypatch):
    """The selected inversion VJP's scratch budget is a 64th of the device's memory, at least 256 MiB,
    unless trace_cuda._SCRATCH_BYTES names one; read per device from its properties (once)."""
    from gvae.kernels.band import trace_cuda
    a = cp.zeros(1)
    try:
        cases = ((4 * 1024**3, 256 * 1024**2), (64 * 1024**3, 1024**3), (80 * 1024**3, 80 * 1024**3 // 64))
        for memory, expected in cases:
            monkeypatch.setattr(fake_cupy, "MEMORY_BYTES", memory)
            cuda_build._memory_bytes.cache_clear()
            assert trace_cuda._scratch_bytes(a) == expected
        monkeypatch.setattr(trace_cuda, "_SCRATCH_BYTES", 12345)
        assert trace_cuda._scratch_bytes(a) == 12345
    finally:
        cuda_build._memory_bytes.cache_clear()


@pytest.mark.parametrize("dtype", DTYPES)
def test_gamma_and_poisson_kernels_match_numba(cp, dtype):
    """gamma.cu (the gamma quantile, its derivative in the shape, the Poisson draws) through gvae's own
    gamma_cuda front, against the Numba kernels on the same items: shapes from 1e-4 to 1e4, uniforms into
    both tails, rates from 1e-8 to 1e7 and past the exact search's end, and the refused items (NaN)."""
    from gvae.kernels import gamma
    rng = np.random.default_rng(3)
    a = np.exp(rng.uniform(np.log(1e-4), np.log(1e4), 300)).astype(dtype)
    u = np.concatenate([rng.uniform(0, 1, 280), [1e-12, 1e-6, 1 - 1e-6, 0.5, 0.0, 1.0, -0.5, np.nan] * 2,
                        [0.3] * 4]).astype(dtype)
    a[-4:] = [0.0, -1.0, np.nan, np.inf]
    z = gamma.gamma_inverse_cdf(a, u)
    host = fake_cupy.cupy.asnumpy
    np.testing.assert_array_equal(host(gamma.gamma_inverse_cdf(cp.asarray(a), cp.asarray(u))), z)
    np.testing.assert_allclose(host(gamma.gamma_draw_shape_grad(cp.asarray(a), cp.asarray(z))),
                               gamma.gamma_draw_shape_grad(a, z), rtol=1e-6 if dtype == np.float32 else 1e-13)
    rate = np.exp(rng.uniform(np.log(1e-8), np.log(1e7), 300))
    rate[:3] = [2e9, 0.0, np.inf]
    rate = rate.astype(dtype)
    want = gamma.poisson_draw(rate, u, 2 ** 40)
    np.testing.assert_array_equal(host(gamma.poisson_draw(cp.asarray(rate), cp.asarray(u), 2 ** 40)), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_banded_lu_solve_matches_numba(cp, dtype):
    """banded_lu.cu through gvae.linalg.solve_banded on the emulated device against the Numba kernel: batches
    with pivoting, a zero leading diagonal, l = 0 or u = 0, n = 1 and k = 3; a singular matrix refused alike."""
    from gvae import linalg
    rng = np.random.default_rng(8)
    for lower, upper, n, k in ((2, 1, 33, 1), (0, 2, 5, 3), (3, 0, 9, 2), (1, 1, 1, 1)):
        ab = rng.standard_normal((4, lower + upper + 1, n)).astype(dtype)
        if n > lower > 0 < upper:
            ab[1, upper] = 0.0  # (every pivot of the second matrix from below)
        ab[:, upper] += 0.0 if lower else 3.0
        b = rng.standard_normal((4, n, k)).astype(dtype)
        want = linalg.solve_banded((lower, upper), ab, b)
        got = fake_cupy.cupy.asnumpy(linalg.solve_banded((lower, upper), cp.asarray(ab), cp.asarray(b)))
        np.testing.assert_allclose(got, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10 * np.abs(want).max())
    singular = np.ones((2, 3, 4), dtype)
    singular[1] = 0.0
    with pytest.raises(linalg.LinAlgError, match=r"singular matrix at batch index \(1,\): the pivot of column 0"):
        linalg.solve_banded((1, 1), cp.asarray(singular), cp.asarray(np.ones(4, dtype)))

"""gvae.jax on a GPU: the CuPy plumbing of gvae/jax/bridge.py.

Here (no GPU needed): the plumbing driven with a fake ``cupy`` module whose arrays are NumPy ones, and
with buffers that call themselves GPU buffers: XLA's stream reaches ``cupy.cuda.ExternalStream``, the
kernel's result lands in XLA's output buffer, a wrong shape or dtype is refused, and under ``jit``,
``vmap`` and ``grad`` the GPU callback gives the CPU callback's bits (the same vmap alignment and
spreading); without CuPy a GPU backend warns once, with the install line, and copies through the host.

On a GPU with CuPy (skipped elsewhere, saying why): every function eagerly, under ``jit``, ``vmap`` and
``grad`` on GPU arrays against the same call on CPU arrays, float32 and float64, with no warning of host
copies and no ``pure_callback``.
"""
import sys
import types
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gvae.jax needs JAX (pip install gvae[jax])")

import jax.numpy as jnp  # noqa: E402

import gvae.jax as gj  # noqa: E402
from gvae.jax import bridge  # noqa: E402
from gvae.kernels import backend  # noqa: E402
from gvae.kernels import band as kband  # noqa: E402
from gvae.kernels.backend import CUDA_INSTALL  # noqa: E402
from tests.band_reference import named_offsets, random_factor  # noqa: E402

N = 12
VECTOR = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec"]
FACTOR = ["band_logdet", "band_trace_inv", "band_diag_inv"]
STREAM = 0x7F00BEEF  # XLA's stream as the fake context gives it
DEVICE = 3  # the GPU the fake buffers say they live on


def call(name, L, offsets, b=None):
    f = getattr(gj, name)
    if name == "band_logdet":
        return f(L)
    return f(L, offsets) if name in FACTOR else f(L, offsets, b)


def inputs(stencil, batch=(2, 3), lead=(3,), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    offsets = named_offsets(stencil, N)
    L = random_factor(rng, batch, offsets, N, dtype=dtype, garbage=0.0)
    return offsets, L, rng.normal(size=lead + (N,)).astype(dtype)


# --------------------------------------------------------------------------------------------------
# Fakes: a cupy module over NumPy, GPU buffers over NumPy arrays, XLA's execution context
# --------------------------------------------------------------------------------------------------

class GpuBuffer:
    """An XLA buffer on GPU ``DEVICE`` as buffer_callback would hand it over (DLPack device type 2,
    kDLCUDA); its memory is a NumPy array, which the fake cupy.asarray hands out."""

    def __init__(self, array):
        self.array = array

    def __dlpack_device__(self):
        return 2, DEVICE


class Context:
    stream = STREAM


class NoStream:
    """An execution context whose stream must not be asked for (JAX's CPU context raises)."""

    @property
    def stream(self):
        raise AssertionError("the stream of a CPU callback was asked for")


def fake_cupy():
    """A cupy module whose arrays are NumPy arrays: it records the devices and streams entered and, for
    every array it wraps, the (device, stream) current at the time."""
    cupy = types.ModuleType("cupy")
    cupy.log, cupy.current = [], [(None, None)]

    class Device:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            cupy.log.append(("Device", self.device))
            cupy.current.append((self.device, cupy.current[-1][1]))

        def __exit__(self, *exc):
            cupy.current.pop()

    class ExternalStream:
        def __init__(self, ptr, device_id=-1):
            self.ptr, self.device_id = ptr, device_id

        def __enter__(self):
            cupy.log.append(("ExternalStream", self.ptr, self.device_id))
            cupy.current.append((cupy.current[-1][0], self.ptr))

        def __exit__(self, *exc):
            cupy.current.pop()

    def asarray(x):
        if not isinstance(x, GpuBuffer):
            raise TypeError(f"the fake cupy.asarray takes GPU buffers only, got {type(x).__name__}")
        cupy.log.append(("asarray", cupy.current[-1]))
        return x.array

    def from_dlpack(x):
        cupy.log.append(("from_dlpack", cupy.current[-1]))
        return np.from_dlpack(x)

    cupy.asarray, cupy.from_dlpack = asarray, from_dlpack
    cupy.broadcast_to, cupy.ascontiguousarray = np.broadcast_to, np.ascontiguousarray
    cupy.cuda = types.SimpleNamespace(Device=Device, ExternalStream=ExternalStream)
    return cupy


# Fakes of GPU buffers over XLA's own need those to be host buffers: on a GPU backend the real tests run.
fakes_need_a_cpu_backend = pytest.mark.skipif(jax.default_backend() != "cpu",
                                              reason="the fake GPU buffers wrap XLA's CPU buffers")


@pytest.fixture
def cupy(monkeypatch):
    """The fake cupy as ``sys.modules["cupy"]`` and as gvae.jax's CuPy, on a backend said to be a GPU."""
    fake = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(bridge, "_backend", [("gpu", fake)])
    return fake


def dress_as_gpu(monkeypatch):
    """buffer_callback whose callback receives XLA's (CPU) buffers dressed as GPU buffers and a context
    with XLA's stream ``STREAM``: the GPU half of the callback then runs under jit, vmap and grad."""
    real = bridge._buffer_callback
    if real is None:
        pytest.skip("this jaxlib has no jax.experimental.buffer_callback")

    def dressed(callback, result, **kw):
        def as_gpu(ctx, out, *xs):  # out: a tuple of XLA's buffers (gvae.jax asks for a tuple of results)
            callback(Context(), tuple(GpuBuffer(np.asarray(o)) for o in out), *(GpuBuffer(np.asarray(x)) for x in xs))
        return real(as_gpu, result, **kw)
    monkeypatch.setattr(bridge, "_buffer_callback", dressed)


# --------------------------------------------------------------------------------------------------
# The callback, driven directly
# --------------------------------------------------------------------------------------------------

def test_the_gpu_callback_runs_the_kernel_on_xla_stream_into_xla_output(cupy):
    offsets, L, b = inputs("grid")
    kernel = lambda L, b: kband.band_solve(L, offsets, b)  # noqa: E731
    callback = bridge._in_place(bridge._batched(lambda L, b: (kernel(L, b),), 3, False, False), cupy)
    out = np.full(np.broadcast_shapes(L.shape[:-2], b.shape[:-1]) + (N,), np.nan)
    callback(Context(), (GpuBuffer(out),), GpuBuffer(L), GpuBuffer(b))
    np.testing.assert_array_equal(out, kband.band_solve(L, offsets, b))
    assert cupy.log[:2] == [("Device", DEVICE), ("ExternalStream", STREAM, DEVICE)]
    wrapped = [entry for entry in cupy.log if entry[0] == "asarray"]
    assert wrapped == [("asarray", (DEVICE, STREAM))] * 3  # out, L, b: each inside XLA's stream
    assert cupy.current == [(None, None)]  # both contexts left


@pytest.mark.parametrize("wrong", ["shape", "dtype"])
def test_the_gpu_callback_refuses_a_result_xla_did_not_expect(cupy, wrong):
    _, L, _ = inputs("chain", batch=(3,))
    kernel = {"shape": lambda L: kband.band_logdet(L)[:1],
              "dtype": lambda L: kband.band_logdet(L).astype(np.float32)}[wrong]
    callback = bridge._in_place(bridge._batched(lambda L: (kernel(L),), 3, False, False), cupy)
    out = np.zeros(3)
    expected = {"shape": r"the kernel gave float64 \(1,\), XLA expected float64 \(3,\)",
                "dtype": r"the kernel gave float32 \(3,\), XLA expected float64 \(3,\)"}[wrong]
    with pytest.raises(RuntimeError, match=expected):
        callback(Context(), (GpuBuffer(out),), GpuBuffer(L))
    assert not out.any()


def test_host_buffers_take_the_numpy_branch_on_a_gpu_backend(cupy):
    """Arrays placed on the CPU under a GPU backend: XLA's buffers are host memory, no CuPy, no stream."""
    _, L, _ = inputs("chain", batch=(3,))

    class HostBuffer(np.ndarray):
        def __dlpack_device__(self):
            return 1, 0

    callback = bridge._in_place(bridge._batched(lambda L: (kband.band_logdet(L),), 3, False, False), cupy)
    out = np.zeros(3).view(HostBuffer)
    callback(NoStream(), (out,), L.view(HostBuffer))
    np.testing.assert_array_equal(out, kband.band_logdet(L))
    assert cupy.log == []


# --------------------------------------------------------------------------------------------------
# The GPU callback under jit, vmap and grad: the CPU callback's bits
# --------------------------------------------------------------------------------------------------

def transformed(name, offsets, L, b):
    """Every transformation of function ``name``: jit, vmap over the factor, over the right-hand side
    (vector functions) and over both, grad; fresh functions each time, so nothing comes from JAX's
    caches of an earlier trace."""
    L, b = jnp.asarray(L), jnp.asarray(b)
    f = lambda L, b: call(name, L, offsets, b)  # noqa: E731
    stacked_L, stacked_b = jnp.stack([L, 1.5 * L]), jnp.stack([b, -b, 2 * b])
    got = {"jit": jax.jit(lambda L, b: f(L, b))(L, b),
           "vmap L": jax.vmap(lambda L, b: f(L, b), in_axes=(0, None))(stacked_L, b),
           "grad": jax.grad(lambda L, b: (f(L, b) ** 2).sum(), argnums=(0, 1))(L, b)}
    if name in VECTOR:
        got["vmap b"] = jax.vmap(lambda L, b: f(L, b), in_axes=(None, 0))(L, stacked_b)
        got["vmap both"] = jax.vmap(lambda L, b: f(L, b))(stacked_L, stacked_b[:2])
        got["vmap grad"] = jax.vmap(jax.grad(lambda L, b: f(L, b).sum(), argnums=(0, 1)))(stacked_L, stacked_b[:2])
    else:
        got["vmap grad"] = jax.vmap(jax.grad(lambda L: f(L, None).sum()))(stacked_L)
    # only the cotangent mapped: the backward kernels need L spread over vmap's axis
    got["vmap cotangent"] = jax.vmap(lambda s: jax.grad(lambda L: (s * f(L, b)).sum())(L))(jnp.asarray([1.0, -2.0, 0.5]))
    return jax.tree.map(np.asarray, got)


@fakes_need_a_cpu_backend
@pytest.mark.usefixtures("jax_x64")
@pytest.mark.parametrize("name", VECTOR + FACTOR)
def test_under_transformations_the_gpu_callback_gives_the_cpu_bits(monkeypatch, name):
    offsets, L, b = inputs("extgrid" if name in VECTOR else "grid")
    expected = transformed(name, offsets, L, b)  # the CPU callback
    cupy = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(bridge, "_backend", [("gpu", cupy)])
    dress_as_gpu(monkeypatch)
    got = transformed(name, offsets, L, b)
    jax.tree.map(np.testing.assert_array_equal, got, expected)
    streams = {entry[1:] for entry in cupy.log if entry[0] == "ExternalStream"}
    assert streams == {(STREAM, DEVICE)}
    assert {entry[1] for entry in cupy.log if entry[0] == "asarray"} == {(DEVICE, STREAM)}


def head_transformed(offsets, L, mu, eps):
    """band_head under jit, vmap over eps, grad and vmap of grad (fresh functions each time)."""
    L, mu, eps = jnp.asarray(L), jnp.asarray(mu), jnp.asarray(eps)
    loss = lambda L, mu, eps: sum((o * o).sum() for o in gj.band_head(L, offsets, mu, eps))  # noqa: E731
    return jax.tree.map(np.asarray, {
        "jit": jax.jit(lambda L, mu, eps: gj.band_head(L, offsets, mu, eps))(L, mu, eps),
        "vmap eps": jax.vmap(lambda e: gj.band_head(L, offsets, mu, e))(jnp.stack([eps, -eps])),
        "grad": jax.grad(loss, argnums=(0, 1, 2))(L, mu, eps),
        "vmap grad": jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(None, 0, None))(L, jnp.stack([mu, 2 * mu]),
                                                                                        eps)})


@fakes_need_a_cpu_backend
@pytest.mark.usefixtures("jax_x64")
def test_the_head_under_transformations_on_the_gpu_callback_gives_the_cpu_bits(monkeypatch):
    """band_head's three results (and its backward's three) through one GPU callback each."""
    offsets, L, b = inputs("extgrid")
    mu, eps = b, np.stack([b, 0.5 * b])  # mu (3, n) and eps (2, 3, n) against L (2, 3, K, n)
    expected = head_transformed(offsets, L, mu, eps)
    cupy = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(bridge, "_backend", [("gpu", cupy)])
    dress_as_gpu(monkeypatch)
    jax.tree.map(np.testing.assert_array_equal, head_transformed(offsets, L, mu, eps), expected)
    assert {entry[1:] for entry in cupy.log if entry[0] == "ExternalStream"} == {(STREAM, DEVICE)}


def test_a_gpu_backend_without_buffer_callback_warns_of_its_own_copies(monkeypatch, cupy):
    monkeypatch.setattr(bridge, "device_module", lambda name: cupy)
    monkeypatch.setattr(bridge, "_backend", [])
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(bridge, "_buffer_callback", None)
    _, L, _ = inputs("chain", batch=(3,))
    with pytest.warns(RuntimeWarning, match="no jax.experimental.buffer_callback: under jit") as record:
        got = jax.jit(lambda L: gj.band_logdet(L))(L)
    assert not any("CuPy" in str(w.message) for w in record)
    np.testing.assert_allclose(got, kband.band_logdet(L), rtol=1e-6)


@fakes_need_a_cpu_backend
def test_with_cupy_and_buffer_callback_nothing_warns(monkeypatch, cupy):
    monkeypatch.setattr(bridge, "device_module", lambda name: cupy)
    monkeypatch.setattr(bridge, "_backend", [])
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    _, L, _ = inputs("chain", batch=(3,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gj.band_logdet(L)
    assert bridge._backend == [("gpu", cupy)]


# --------------------------------------------------------------------------------------------------
# Eager calls on a GPU: through DLPack
# --------------------------------------------------------------------------------------------------

@fakes_need_a_cpu_backend
def test_eager_gpu_arrays_go_through_dlpack(monkeypatch, cupy):
    """The eager path's plumbing: every argument through cupy.from_dlpack, the kernel's result back
    through jax.dlpack.from_dlpack, on the arguments' GPU (here: JAX's CPU arrays and NumPy, both DLPack)."""
    offsets, L, b = inputs("grid", dtype=np.float32)
    expected = np.asarray(gj.band_solve_t(L, offsets, b))  # CPU arrays: no CuPy
    assert cupy.log == []
    monkeypatch.setattr(bridge, "_on_one_gpu", lambda args: True)
    got = gj.band_solve_t(jnp.asarray(L), offsets, jnp.asarray(b))
    assert isinstance(got, jax.Array) and got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), expected)
    assert cupy.log == [("Device", 0), ("from_dlpack", (0, None)), ("from_dlpack", (0, None))]


def test_gpu_backend_without_cupy_warns_with_the_install_line_and_copies_through_the_host(monkeypatch):
    """No CuPy (an import of it fails): one warning naming CuPy and the install line; jit then goes
    through pure_callback (host copies), with the same results."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backend, "_DEVICES", {k: v for k, v in backend._DEVICES.items() if k != "cuda"})
    monkeypatch.setattr(bridge, "_backend", [])
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")

    def refused(*args, **kwargs):
        raise AssertionError("buffer_callback used without CuPy on a GPU backend")
    monkeypatch.setattr(bridge, "_buffer_callback", refused)
    offsets, L, b = inputs("grid")
    L32, b32 = L.astype(np.float32), b.astype(np.float32)
    with pytest.warns(RuntimeWarning) as record:
        got = jax.jit(lambda L, b: gj.band_solve(L, offsets, b))(L32, b32)
    messages = [str(w.message) for w in record if "gvae.jax" in str(w.message)]
    assert len(messages) == 1
    assert "needs CuPy, which is not installed" in messages[0]
    assert CUDA_INSTALL in messages[0] and "every call copies its arguments to the host" in messages[0]
    np.testing.assert_allclose(got, kband.band_solve(L32, offsets, b32), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        gj.band_logdet(L32)


# --------------------------------------------------------------------------------------------------
# On a real GPU with CuPy
# --------------------------------------------------------------------------------------------------

def _gpu_missing():
    """Why the GPU tests cannot run here, or None."""
    if jax.default_backend() != "gpu":
        return f"needs JAX's default backend to be a GPU (it is {jax.default_backend()})"
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (ImportError, CUDARuntimeError without a driver, ...)
        return f"needs CuPy reaching a GPU ({type(e).__name__}: {e}; {CUDA_INSTALL})"
    return None if count else "needs CuPy reaching a GPU (it sees none)"


GPU_MISSING = _gpu_missing()
on_gpu = pytest.mark.skipif(GPU_MISSING is not None, reason=GPU_MISSING or "")
TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def everything(name, offsets, L, b):
    """Eager, jit, vmap (each argument) and grad of function ``name`` on L and b where they live."""
    f = lambda L, b: call(name, L, offsets, b)  # noqa: E731
    stacked_L = jnp.stack([L, 1.5 * L])
    got = {"eager": f(L, b), "jit": jax.jit(f)(L, b), "vmap L": jax.vmap(f, in_axes=(0, None))(stacked_L, b)}
    if name in VECTOR:
        stacked_b = jnp.stack([b, -b])
        got["vmap b"] = jax.vmap(f, in_axes=(None, 0))(L, stacked_b)
        got["grad"] = jax.grad(lambda L, b: (f(L, b) ** 2).sum(), argnums=(0, 1))(L, b)
        got["jit vmap grad"] = jax.jit(jax.vmap(jax.grad(lambda L, b: f(L, b).sum(), argnums=(0, 1))))(
            stacked_L, stacked_b)
    else:
        got["grad"] = jax.grad(lambda L: (f(L, None) ** 2).sum())(L)
        got["jit vmap grad"] = jax.jit(jax.vmap(jax.grad(lambda L: f(L, None).sum())))(stacked_L)
    scales = jnp.asarray([1.0, -2.0, 0.5], L.dtype, device=next(iter(L.devices())))
    got["vmap cotangent"] = jax.vmap(lambda s: jax.grad(lambda L: (s * f(L, b)).sum())(L))(scales)
    return got


@on_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stencil", ["chain", "extgrid"])
@pytest.mark.parametrize("name", VECTOR + FACTOR)
def test_on_the_gpu_every_path_matches_the_cpu(request, monkeypatch, name, stencil, dtype):
    if dtype == np.float64:
        request.getfixturevalue("jax_x64")
    monkeypatch.setattr(bridge, "_backend", [])  # the setup runs again: a warning would show here

    def refused(*args, **kwargs):
        raise AssertionError("pure_callback used: a copy through the host")
    monkeypatch.setattr(jax, "pure_callback", refused)
    offsets, L, b = inputs(stencil, dtype=dtype)
    gpu, cpu = jax.devices("gpu")[0], jax.devices("cpu")[0]  # the CPU's: the Numba kernels, no CuPy
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = everything(name, offsets, jax.device_put(L, gpu), jax.device_put(b, gpu))
        jax.block_until_ready(got)
    assert not [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    expected = everything(name, offsets, jax.device_put(L, cpu), jax.device_put(b, cpu))
    for path in got:
        for g, e in zip(jax.tree.leaves(got[path]), jax.tree.leaves(expected[path])):
            assert g.devices() == {gpu}, path
            assert g.dtype == e.dtype == dtype, path
            np.testing.assert_allclose(np.asarray(g), np.asarray(e), err_msg=f"{name} {path}", **TOLERANCE[dtype])


@on_gpu
def test_on_the_gpu_a_bad_factor_is_the_kernels_error():
    """The verdict on the values comes from the CUDA kernel: eagerly a ValueError, under jit the same
    (jaxlib 0.11 on a GPU passes the callback's exception on as it is) or a JaxRuntimeError holding it."""
    offsets, L, b = inputs("chain", dtype=np.float32)
    L[0, 1, 0, 5] = -1.0
    L = jax.device_put(L, jax.devices("gpu")[0])
    with pytest.raises(ValueError):
        gj.band_logdet(L)
    with pytest.raises((ValueError, jax.errors.JaxRuntimeError), match="strictly positive"):
        jax.jit(lambda L: gj.band_logdet(L))(L).block_until_ready()

"""How gvae.jax runs a kernel: directly on concrete arrays, through a callback under a transformation.

Called eagerly on concrete arrays, a function runs gvae's kernel directly, past ``custom_vjp`` too: the
Numba kernel on ``np.asarray`` views of CPU arrays, the CUDA kernel on CuPy views of GPU arrays
(``cupy.from_dlpack``, the result back through ``jax.dlpack.from_dlpack``; no copy either way). Under a
transformation (``jit``, ``vmap``, ``grad``: any tracer among the arguments) it runs the same kernel in
a ``jax.experimental.buffer_callback``, which hands the callback XLA's own buffers: on the CPU as NumPy
views, on a GPU as CuPy views worked on in XLA's stream (the kernel reads a jit argument's memory where
it is, and its result is written into the buffer jit returns). Without buffer_callback (older jaxlib),
or on a GPU without CuPy, it goes through ``jax.pure_callback`` instead, whose arguments are host copies
(on a GPU a warning says so once). ``vmap`` reaches the kernel as one more leading batch axis
(``vmap_method="expand_dims"``): every argument is first given the same number of batch axes, so that
the mapped axis lines up across arguments and the kernels' own broadcasting does the rest. Inside
``shard_map`` the results are cast to vary over the mesh axes their arguments vary over, and
:func:`_like` sums a cotangent back to its primal's."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.backend import device_module
from ..kernels.cuda.stream import external_stream

try:  # experimental in jaxlib 0.10: where it is missing, every traced call goes through pure_callback
    from jax.experimental.buffer_callback import buffer_callback as _buffer_callback
except ImportError:
    _buffer_callback = None

_backend = []  # (JAX's default backend, CuPy or None), asked once (it costs): _setup
_DLPACK_CPU = 1  # DLPack's device type of host memory (kDLCPU)


def _concrete(args):
    return not any(isinstance(a, jax.core.Tracer) for a in args)


def _warn(message):
    warnings.warn(f"gvae.jax: {message}", RuntimeWarning, stacklevel=5)


def _setup():
    """(JAX's default backend, CuPy or None), once per process: CuPy where the backend is a GPU and CuPy
    reaches it. A warning, once, where calls copy through the host."""
    if not _backend:
        backend, cupy = jax.default_backend(), None
        copies = f"on {backend} every call copies its arguments to the host and its result back"
        if backend == "gpu":
            try:
                cupy = device_module("cuda")
            except RuntimeError as e:  # the message names what to install
                _warn(f"the band kernels run on the CPU: {e}; {copies}")
            else:
                if _buffer_callback is None:
                    _warn(f"this jaxlib has no jax.experimental.buffer_callback: under jit, vmap or grad {copies}")
        elif backend != "cpu":
            _warn(f"the band kernels run on the CPU; {copies}")
        _backend.append((backend, cupy))
    return _backend[0]


def _align(args, cores):
    """Every array given the same number of batch axes (leading size-1 axes), ``cores`` trailing axes
    each not being batch axes: vmap's leading axis then lines up across the arguments."""
    m = max(a.ndim - c for a, c in zip(args, cores))
    return [a.reshape((1,) * (m - a.ndim + c) + a.shape) for a, c in zip(args, cores)]


def _batched(kernel, ndim, spread, x64):
    """``call(xp, xs)``: the kernel on the arrays ``xs`` of array module ``xp`` (NumPy or CuPy) as a
    callback receives them, vmap's axes (those beyond ``ndim``) in front; ``spread``: see :func:`_run`."""
    def call(xp, xs):
        if x64 and not jax.config.jax_enable_x64:
            # JAX has made float32 copies of float64 arguments here and would refuse the float32 result.
            raise RuntimeError("gvae.jax: float64 under a transformation needs x64 enabled process-wide "
                               "(jax.config.update('jax_enable_x64', True)): the jax.enable_x64 context is "
                               "local to its thread, and XLA may run the callback on another")
        extra = xs[0].ndim - ndim  # the axes vmap added in front
        if spread and extra:
            lead = np.broadcast_shapes(*(x.shape[:extra] for x in xs))
            xs = [xp.broadcast_to(x, lead + x.shape[extra:]) for x in xs]
        return kernel(*xs)
    return call


def _write(out, got):
    """The kernel's result ``got`` into XLA's output ``out`` (both NumPy or both CuPy)."""
    if got.shape != out.shape or got.dtype != out.dtype:  # an assignment would broadcast or cast
        raise RuntimeError(f"gvae.jax: the kernel gave {got.dtype} {got.shape}, XLA expected "
                           f"{out.dtype} {out.shape}")
    out[...] = got


def _in_place(call, cupy):
    """The callback of ``buffer_callback``: XLA's own buffers, read where they are and the results (a
    tuple) written into XLA's (the tuple ``out``). Host buffers are NumPy views; a GPU's are CuPy views
    (``__cuda_array_interface__``, no copy), worked on in XLA's stream, in order with XLA's own work and
    nothing through the host."""
    def in_place(ctx, out, *xs):
        kind, device = out[0].__dlpack_device__()
        if kind == _DLPACK_CPU:  # also on a GPU backend, for arrays placed on the CPU
            for o, g in zip(out, call(np, [np.asarray(x) for x in xs])):
                _write(np.asarray(o), g)
            return
        with cupy.cuda.Device(device), external_stream(cupy, ctx.stream, device):
            for o, g in zip(out, call(cupy, [cupy.asarray(x) for x in xs])):
                _write(cupy.asarray(o), g)
    return in_place


def _eager_cuda(cupy, kernel, args):
    """``kernel`` (a tuple of results) on concrete GPU arrays through DLPack, no copy. The stream protocol
    orders the work: ``cupy.from_dlpack`` hands JAX CuPy's current stream, which JAX makes wait for the
    arguments, and ``jax.dlpack.from_dlpack`` hands CuPy JAX's, which CuPy makes wait for the result."""
    with cupy.cuda.Device(args[0].__dlpack_device__()[1]):
        got = kernel(*(cupy.from_dlpack(a) for a in args))
        # JAX imports dense layouts only
        return tuple(jax.dlpack.from_dlpack(cupy.ascontiguousarray(g)) for g in got)


def _on_one_gpu(args):
    """Whether the arguments all live on one GPU (a NumPy argument lives on the host)."""
    devices = {d for a in args for d in (a.devices() if isinstance(a, jax.Array) else ("host",))}
    return len(devices) == 1 and getattr(next(iter(devices)), "platform", None) == "gpu"


def _eager(cupy, backend, kernel, args):
    """``kernel`` (a tuple of results) on concrete arrays: on their GPU through CuPy when all of them live there, else on the
    host (NumPy views of CPU arrays, copies of any others), the result on the first argument's device.
    Mixed placements happen: a backward pass's cotangent is made on the default device."""
    if cupy is not None and _on_one_gpu(args):
        return _eager_cuda(cupy, kernel, args)
    got = kernel(*(np.asarray(a) for a in args))
    home = next(iter(args[0].devices())) if isinstance(args[0], jax.Array) else None
    return tuple(jnp.asarray(g) if home is None or home.platform == backend else jax.device_put(g, home)
                 for g in got)


def _varying(x):
    """The mesh axes over which x varies inside ``shard_map`` (JAX's manual axis types), else ()."""
    kind = getattr(jax.typeof(x), "manual_axis_type", None)
    return frozenset(kind.varying) if kind is not None else frozenset()


def _all_varying(args):
    """``args`` cast to vary over every mesh axis any of them varies over, and those axes, sorted (empty
    outside shard_map)."""
    axes = frozenset().union(*(_varying(a) for a in args))
    return [_vary(a, axes) for a in args], tuple(sorted(axes))


def _vary(x, axes):
    """x cast to vary over the mesh axes ``axes`` too."""
    missing = frozenset(axes) - _varying(x)
    return jax.lax.pcast(x, tuple(sorted(missing)), to="varying") if missing else x


def _like(ct, primal):
    """The cotangent ``ct`` of ``primal`` with primal's manual axis type: summed over the mesh axes ct
    varies over and primal does not (the shards' contributions to a replicated input's gradient)."""
    extra = _varying(ct) - _varying(primal)
    return jax.lax.psum(ct, tuple(sorted(extra))) if extra else ct


def _run_many(kernel, outs, args, cores, spread=False):
    """``kernel(*arrays)`` (NumPy arrays, or CuPy arrays on a GPU) giving a tuple of results, ``outs`` their
    (shape, trailing axes that are not batch axes), in the arguments' dtype. With ``spread`` the kernel
    needs every argument over the whole batch: vmap's axes are then broadcast over all arguments in the
    callback (views, no copy). Traced: one callback for all the results (a tuple of XLA's buffers),
    through ``buffer_callback`` on the CPU and on a GPU with CuPy, else ``pure_callback``."""
    backend, cupy = _setup()
    if _concrete(args):
        return _eager(cupy, backend, kernel, args)
    args = _align(args, cores)
    # Inside shard_map the output varies over every mesh axis an input varies over; the callbacks give
    # their output no manual axis type, so it is cast back (a custom_vjp checks its cotangents' types).
    args, axes = _all_varying(args)
    call = _batched(kernel, args[0].ndim, spread, jax.config.jax_enable_x64)
    m = args[0].ndim - cores[0]  # the batch axes every argument has now
    results = tuple(jax.ShapeDtypeStruct((1,) * (m - len(shape) + core) + tuple(shape), args[0].dtype)
                    for shape, core in outs)
    if _buffer_callback is not None and (backend == "cpu" or cupy is not None):
        got = _buffer_callback(_in_place(call, cupy), results, vmap_method="expand_dims")(*args)
    else:
        def host(*xs):  # pure_callback's arguments are host copies
            return call(np, [np.asarray(x) for x in xs])
        got = jax.pure_callback(host, results, *args, vmap_method="expand_dims")
    return tuple(_vary(g, axes).reshape(shape) for g, (shape, _) in zip(got, outs))


def _run(kernel, shape, out_core, args, cores, spread=False):
    """:func:`_run_many` of a kernel with one result, of ``shape`` (``out_core`` trailing axes not batch
    axes; with ``spread`` the first argument's batch)."""
    return _run_many(lambda *xs: (kernel(*xs),), [(shape, out_core)], args, cores, spread)[0]

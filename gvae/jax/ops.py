"""The banded-factor kernels of docs/api.md section 2 as JAX functions with ``jax.custom_vjp``.

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
the mapped axis lines up across arguments and the kernels' own broadcasting does the rest.

Backward passes run gvae's own VJP kernels as ``gvae.torch.ops`` does, the solves' and products' by the
rules of :mod:`gvae.rules.band`: ``band_outer`` (the L-gradient of every solve and product),
``band_logdet_grad``, ``band_trace_inv_grad`` and ``band_diag_inv_grad``.
Reverse mode only, to first order: the callbacks have no JVP rule, so ``jvp``, ``jacfwd`` and a
gradient of a gradient raise.

Shapes, dtypes and offsets are checked while tracing (a ``TypeError``/``ValueError`` naming the function
and argument, under ``jit`` too); the verdict on the values (a diagonal entry <= 0, NaN) is the kernel's
``ValueError``, raised directly in eager mode and, under ``jit``, arriving wrapped in a
``jax.errors.JaxRuntimeError`` whose message contains it on the CPU, as itself on a GPU (jaxlib 0.11).
"""
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import band as _band
from ..kernels.backend import array_module, device_module
from ..kernels.cuda.stream import external_stream
from ..rules import head
from ..rules.band import VJP, BandKernels
from ..rules.broadcast import unbroadcast
from ..rules.checks import Checks, offsets_tuple

try:  # experimental in jaxlib 0.10: where it is missing, every traced call goes through pure_callback
    from jax.experimental.buffer_callback import buffer_callback as _buffer_callback
except ImportError:
    _buffer_callback = None

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_head"]

_backend = []  # (JAX's default backend, CuPy or None), asked once (it costs): _setup
_DLPACK_CPU = 1  # DLPack's device type of host memory (kDLCPU)

# Shapes and dtypes are static: the checks run while tracing as well as eagerly, on JAX arrays (converted
# first, hence no type check); gvae.jax.distribution's too.
CHECKS = Checks(None, (np.dtype(np.float32), np.dtype(np.float64)), "float32 or float64", np.broadcast_shapes,
                 ValueError)
_dtype = CHECKS.dtypes


def _array(x):
    """x as a JAX array (a jax.Array or tracer as it is: jnp.asarray would dispatch a conversion)."""
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


def _factor(name, L, offsets=None):
    """L as an array checked to have shape (*batch, K, n), K, n >= 1, and the offsets as a tuple."""
    L = _array(L)
    K, n = CHECKS.factor(name, L)
    return L, (None if offsets is None else offsets_tuple(name, offsets, n, K))


# --------------------------------------------------------------------------------------------------
# Kernel calls: directly on concrete arrays, through a callback under a transformation
# --------------------------------------------------------------------------------------------------

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


def _vector(name, L, offsets, v, check):
    """The forward kernel ``name`` (a solve or product) on L (*batch, K, n) and v (*lead, n)."""
    shape = CHECKS.vector(name, "v", L, v)
    kernel = getattr(_band, name)
    return _run(lambda L, v: kernel(L, offsets, v, check=check), shape, 1, [L, v], [2, 1])


def _outer(a, c, L, offsets, scale):
    """band_outer: ``scale * sum a_i c_{i - o_k}`` over the samples, summed to L's shape."""
    return _run(lambda L, a, c: _band.band_outer(a, c, offsets, L.shape[:-2], scale), L.shape, 2,
                 [L, a, c], [2, 1, 1], spread=True)


# --------------------------------------------------------------------------------------------------
# The differentiable functions: every backward is a gvae kernel
# --------------------------------------------------------------------------------------------------

# The kernels of gvae.rules.band's VJPs, run as the forward ones.
_KERNELS = BandKernels(solve=partial(_vector, "band_solve", check=False),
                       solve_t=partial(_vector, "band_solve_t", check=False),
                       matvec=partial(_vector, "band_matvec", check=False),
                       matvec_t=partial(_vector, "band_matvec_t", check=False), outer=_outer)


def _vector_op(name):
    """The custom_vjp of a solve or product, its backward ``name``'s rule of :data:`gvae.rules.band.VJP`."""
    rule = VJP[name]

    @partial(jax.custom_vjp, nondiff_argnums=(1, 3))
    def op(L, offsets, v, check):
        return _vector(name, L, offsets, v, check)

    def fwd(L, offsets, v, check):
        out = _vector(name, L, offsets, v, check)
        return out, (L, v, out)

    def bwd(offsets, check, res, g):
        L, v, out = res
        gL, gv = rule(_KERNELS, L, offsets, v, out, g, True, True)
        return _like(gL, L), _like(unbroadcast(gv, v.shape), v)

    op.defvjp(fwd, bwd)
    return op


_VECTOR = {name: _vector_op(name) for name in VJP}


def _logdet_plain(L, check):
    return _run(lambda L: _band.band_logdet(L, check=check), L.shape[:-2], 0, [L], [2])


_logdet = jax.custom_vjp(_logdet_plain, nondiff_argnums=(1,))


def _logdet_fwd(L, check):
    return _logdet_plain(L, check), L


def _logdet_bwd(check, L, g):
    return (_like(_run(lambda L, g: _band.band_logdet_grad(L, g, check=False), L.shape, 2, [L, g], [2, 0],
                       spread=True), L),)


_logdet.defvjp(_logdet_fwd, _logdet_bwd)


def _sigma_op(name, per_row):
    """band_trace_inv (one number per factor) or, with ``per_row``, band_diag_inv (n per factor): the
    plain function and its custom_vjp."""
    kernel, grad = getattr(_band, name), getattr(_band, name + "_grad")

    def plain(L, offsets, check):
        shape = L.shape[:-2] + ((L.shape[-1],) if per_row else ())
        return _run(lambda L: kernel(L, offsets, check=check), shape, int(per_row), [L], [2])

    def fwd(L, offsets, check):
        return plain(L, offsets, check), L

    def bwd(offsets, check, L, g):
        return (_like(_run(lambda L, g: grad(L, offsets, g, check=False), L.shape, 2, [L, g], [2, int(per_row)],
                           spread=True), L),)

    op = jax.custom_vjp(plain, nondiff_argnums=(1, 2))
    op.defvjp(fwd, bwd)
    return plain, op


_SIGMA = {"band_trace_inv": _sigma_op("band_trace_inv", False), "band_diag_inv": _sigma_op("band_diag_inv", True)}


def _head_shapes(L, mu, eps):
    """The shapes of band_head's x and log q (see :func:`band_head`), checked."""
    x_shape = CHECKS.vector("band_head", "eps", L, eps)
    return x_shape, np.broadcast_shapes(x_shape[:-1], CHECKS.vector("band_head", "mu", L, mu)[:-1])


def _head_plain(L, offsets, mu, eps, check):
    """(x, log q, KL): the three kernels of :func:`gvae.rules.head.kernel_forward` in one callback, the rest
    (:func:`gvae.rules.head.combine`) in XLA."""
    x_shape, q_shape = _head_shapes(L, mu, eps)
    x, logdet, trace = _run_many(lambda L, eps: head.kernel_forward(_band, L, offsets, eps, check),
                                 [(x_shape, 1), (L.shape[:-2], 0), (L.shape[:-2], 0)], [L, eps], [2, 1], spread=True)
    log_q, kl = head.combine(logdet, trace, mu, eps)
    return x, jnp.broadcast_to(log_q, q_shape), kl  # z's batch is mu's too where mu's is wider


_head = jax.custom_vjp(_head_plain, nondiff_argnums=(1, 4))


def _head_fwd(L, offsets, mu, eps, check):
    out = _head_plain(L, offsets, mu, eps, check)
    return out, (L, mu, eps, out[0])


def _head_bwd(offsets, check, res, cotangents):
    """gL and eps's gradient through x from the four kernels of :func:`gvae.rules.head.kernel_backward` in
    one callback; the weights, mu's gradient and the reductions in XLA."""
    L, mu, eps, x = res
    gx, glq, gkl = cotangents
    det, half_trace, gmu = head.cotangents(L.shape[:-2], mu, glq, gkl)
    gL, geps = _run_many(lambda L, x, gx, det, half: head.kernel_backward(_band, array_module(L), L, offsets, x, gx,
                                                                          det, half),
                         [(L.shape, 2), (x.shape, 1)], [L, x, gx, det, half_trace], [2, 1, 1, 0, 0], spread=True)
    geps = unbroadcast(geps, eps.shape) - unbroadcast(glq[..., None] * eps, eps.shape)
    return _like(gL, L), _like(unbroadcast(gmu, mu.shape), mu), _like(geps, eps)


_head.defvjp(_head_fwd, _head_bwd)


# --------------------------------------------------------------------------------------------------
# Public functions (docs/api.md, "From JAX")
# --------------------------------------------------------------------------------------------------

def _vector_public(name, argname, L, offsets, v, check):
    L, offsets = _factor(name, L, offsets)
    v = _array(v)
    _dtype(name, [("L", L), (argname, v)])
    CHECKS.vector(name, argname, L, v)
    if _concrete((L, v)):  # nothing to differentiate: custom_vjp's dispatch would cost many kernel calls
        return _vector(name, L, offsets, v, bool(check))
    return _VECTOR[name](L, offsets, v, bool(check))


def band_solve_t(L, offsets, b, *, check=True):
    """x with L^T x = b; L (*batch, K, n), b (*lead, n) broadcasting with batch; float32 or float64."""
    return _vector_public("band_solve_t", "b", L, offsets, b, check)


def band_solve(L, offsets, b, *, check=True):
    """x with L x = b (shapes as :func:`band_solve_t`)."""
    return _vector_public("band_solve", "b", L, offsets, b, check)


def band_matvec_t(L, offsets, x, *, check=True):
    """L^T x (shapes as :func:`band_solve_t`)."""
    return _vector_public("band_matvec_t", "x", L, offsets, x, check)


def band_matvec(L, offsets, x, *, check=True):
    """L x (shapes as :func:`band_solve_t`)."""
    return _vector_public("band_matvec", "x", L, offsets, x, check)


def band_logdet(L, *, check=True):
    """log det L = sum_i log L[..., 0, i], shape ``L.shape[:-2]``."""
    L, _ = _factor("band_logdet", L)
    _dtype("band_logdet", [("L", L)])
    return (_logdet_plain if _concrete((L,)) else _logdet)(L, bool(check))


def band_trace_inv(L, offsets, *, check=True):
    """tr((L L^T)^-1), exact, shape ``L.shape[:-2]``."""
    L, offsets = _factor("band_trace_inv", L, offsets)
    _dtype("band_trace_inv", [("L", L)])
    plain, op = _SIGMA["band_trace_inv"]
    return (plain if _concrete((L,)) else op)(L, offsets, bool(check))


def band_diag_inv(L, offsets, *, check=True):
    """diag((L L^T)^-1), exact, shape ``L.shape[:-2] + (n,)``."""
    L, offsets = _factor("band_diag_inv", L, offsets)
    _dtype("band_diag_inv", [("L", L)])
    plain, op = _SIGMA["band_diag_inv"]
    return (plain if _concrete((L,)) else op)(L, offsets, bool(check))


def band_head(L, offsets, mu, eps, *, check=True):
    """A VAE step's three uses of q = N(mu, (L L^T)^-1) in one kernel call and one backward: ``(z, log_q,
    kl)`` with z = mu + L^-T eps (the reparameterised sample, of eps's shape broadcast with L's batch),
    log_q = log q(z) (that shape without n, broadcast with mu's batch) and kl = KL(q || N(0, I)) (L's batch
    broadcast with mu's). The same values and derivatives as ``mu + band_solve_t(L, offsets, eps)``, the
    log-density at it and the closed-form KL (:mod:`gvae.rules.head`). L (*batch, K, n); mu (*batch, n);
    eps (*S, *batch, n); float32 or float64."""
    L, offsets = _factor("band_head", L, offsets)
    mu, eps = _array(mu), _array(eps)
    _dtype("band_head", [("L", L), ("mu", mu), ("eps", eps)])
    _head_shapes(L, mu, eps)
    x, log_q, kl = (_head_plain if _concrete((L, mu, eps)) else _head)(L, offsets, mu, eps, bool(check))
    return mu + x, log_q, kl

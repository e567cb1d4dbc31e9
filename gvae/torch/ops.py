"""The banded-factor kernels of docs/api.md section 2 as PyTorch operators in the ``gvae::`` namespace.

Each operator is defined with ``torch.library.Library`` (schema, CPU and CUDA kernels) rather than
``torch.library.custom_op``, whose Python layers cost more per call in eager mode. Both take the same
``register_fake`` (shape and dtype only, so ``torch.compile`` and ``torch.export`` trace through) and
``register_vmap``. Derivatives are one ``torch.autograd.Function`` per operator
(:func:`_autograd`) with a reverse-mode rule and a forward-mode one, so ``torch.autograd.forward_ad`` and the
``torch.func`` transforms (``grad``, ``jacrev``, ``jvp``, ``jacfwd``, ``hessian``, ``vmap`` of each) work on
the public functions; ``band_diag_inv`` alone refuses forward mode (its tangent is not O(n K)). Called as
``torch.ops.gvae.NAME``, an operator takes reverse and forward mode, but not ``torch.func``'s
derivatives: those enter an ``autograd.Function`` before the dispatcher, so such a call refuses clearly.

CPU tensors reach the Numba kernels as NumPy views of their own memory (``Tensor.numpy``) and the
kernels' outputs come back as tensors over the same memory (``torch.from_numpy``): no copy either way.
A non-contiguous input is copied once, by the kernel front ends, as for a strided NumPy array.

CUDA tensors reach gvae's CUDA kernels (the same front ends of :mod:`gvae.kernels.band`, which run them on
CuPy arrays) through DLPack, again without a copy (a non-contiguous tensor is made contiguous first, the
one copy the CPU path makes too). CuPy is imported when the first CUDA tensor arrives (a ``RuntimeError``
names what to install where it is missing). The kernels are launched on
``torch.cuda.current_stream(device)``, in order with PyTorch's own work, and what CuPy allocates during
the call, the outputs included, comes from PyTorch's caching allocator on that stream. ``check=True`` costs
what it costs on CuPy arrays: one read of two flags from the device per call (``check=False``, as in every
backward, reads nothing). Tensors on different devices (the dispatcher sends a call mixing CPU and CUDA
tensors to the CUDA kernel) are a ``ValueError`` naming each argument's device.

The public functions take a shorter road in plain eager mode (:func:`_call`): the dispatcher and
``torch.library``'s Python autograd kernel cost several kernel calls on a small input, so on plain CPU
tensors with nothing tracing (CUDA tensors always go through the dispatcher), the CPU kernel runs directly, or inside an ``autograd.Function`` made of the
operator's own setup and backward when a gradient is wanted.

Backward passes run gvae's own VJP kernels, themselves operators here so that the backward traces too,
the solves' and products' by the rules of :mod:`gvae.rules.band`: ``band_outer`` (the L-gradient of
every solve and product), ``band_logdet_grad``, ``band_trace_inv_grad`` and ``band_diag_inv_grad``.
Solves and products are differentiable to any order (the VJP of ``band_outer`` is a pair of band
products). ``band_trace_inv`` and ``band_diag_inv`` are differentiable once: gvae has no second-order
kernel of the selected inversion, so a double backward through them raises ``NotImplementedError``.
"""
import contextlib
from functools import partial

import torch
import torch.autograd.forward_ad as _forward_ad

from ..kernels import band as _band
from ..kernels.backend import CUDA_INSTALL, array_module
from ..kernels.cuda.stream import external_stream
from ..rules import head
from ..rules.band import VJP, BandKernels
from ..rules.checks import Checks

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_head"]

_lib = torch.library.Library("gvae", "DEF")
# name -> operator overload, CPU kernel, CUDA kernel, fake (shape-only) kernel, autograd.Function of the
# operator (forward and reverse mode, torch.func) and of the eager path (reverse mode)
_OPS, _CPU, _CUDA, _FAKE, _FUNCTION, _EAGER = {}, {}, {}, {}, {}, {}
_VECTOR = {"band_solve_t": "b", "band_solve": "b", "band_matvec_t": "x", "band_matvec": "x"}


def _broadcast_shapes(*shapes):
    """``torch.broadcast_shapes(*shapes)`` as a tuple; shapes of plain ints are broadcast here, in a few
    hundred nanoseconds, where PyTorch's reference implementation (written for symbolic sizes) costs
    about 30 us a call, several times a band_head's step. Symbolic sizes (torch.compile's) go to it."""
    out = []
    for shape in shapes:
        for i, d in enumerate(reversed(shape)):
            if type(d) is not int:
                return tuple(torch.broadcast_shapes(*shapes))
            if i == len(out):
                out.append(d)
            elif d != out[i] and d != 1:
                if out[i] != 1:
                    raise RuntimeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
                out[i] = d
    return tuple(reversed(out))


# The checks shared by the kernels, the fake (shape-only) implementations and gvae.torch.distribution.
CHECKS = Checks(torch.Tensor, (torch.float32, torch.float64), "torch.float32 or torch.float64",
                 _broadcast_shapes, RuntimeError)
_dtype = CHECKS.dtypes


def _np(t):
    """The NumPy view of a CPU tensor's memory (no copy; autograd is handled outside the kernel). detach()
    only where a gradient is tracked: it costs as much again as numpy() on a small tensor."""
    return t.detach().numpy() if t.requires_grad else t.numpy()


def _cupy():
    """CuPy, imported when the first CUDA tensor arrives (gvae.torch works on machines without it)."""
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(f"gvae.torch: CUDA tensors need CuPy, which could not be imported ({e}); install "
                           f"it with {CUDA_INSTALL}") from None
    return cupy


def _cuda_device(name, named):
    """The one CUDA device (a ``torch.device``) of the tensors among ``named``, (argname, value) pairs of a
    call of ``gvae::name``; a ValueError naming each tensor argument's device where they are not all on it."""
    devices = {v.device for _, v in named if isinstance(v, torch.Tensor)}
    if len(devices) == 1:
        device, = devices
        if device.type == "cuda":
            return device
    where = ", ".join(f"{a} on {v.device}" for a, v in named if isinstance(v, torch.Tensor))
    raise ValueError(f"{name}: the tensor arguments must be on one CUDA device, got {where}; move them to one "
                     "device first (gvae never copies between devices)")


def _allocator(cupy, device):
    """A CuPy allocator (nbytes -> ``cupy.cuda.MemoryPointer``) drawing from PyTorch's caching allocator:
    each block is an uint8 tensor on ``device`` (allocated on PyTorch's current stream), owned by the
    CuPy memory, so it goes back to PyTorch's cache, in that stream's order, when CuPy's last reference to
    it (an output handed to PyTorch through DLPack included) dies. Zero bytes give a null pointer, which
    CuPy accepts given the device."""
    def alloc(nbytes):
        owner = torch.empty(nbytes, dtype=torch.uint8, device=device)
        memory = cupy.cuda.UnownedMemory(owner.data_ptr(), nbytes, owner, device.index)
        return cupy.cuda.MemoryPointer(memory, 0)
    return alloc


@contextlib.contextmanager
def _on_stream(cupy, device, stream):
    """CuPy's current device, stream and allocator set to PyTorch's for the block: ``device`` (a CUDA
    ``torch.device``), ``stream`` (a ``torch.cuda.Stream`` of it, PyTorch's current one) and
    :func:`_allocator`. Launched on PyTorch's stream, the kernels follow the work that made their inputs
    and precede the work that reads their outputs, with no synchronisation."""
    with cupy.cuda.Device(device.index), external_stream(cupy, stream.cuda_stream, device.index), \
            cupy.cuda.using_allocator(_allocator(cupy, device)):
        yield


# The floating dtypes the kernels take, as CuPy names them (the tensors' other dtypes go through DLPack).
_CUPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _to_cupy(cupy, t):
    """The CuPy array over a CUDA tensor's memory, no copy (autograd is handled outside the kernel). A
    non-contiguous tensor is copied once here, as the kernel front ends would copy its strided CuPy view.
    A float tensor is wrapped by its pointer, owned by the CuPy memory: DLPack's hand-over costs several
    times as much on the host, and its stream handshake is not needed, as the kernels run on the stream
    PyTorch's current one (:func:`_on_stream`)."""
    t = t.detach().contiguous()
    dtype = _CUPY_DTYPES.get(t.dtype)
    if dtype is None or t.numel() == 0:
        return cupy.from_dlpack(t)
    memory = cupy.cuda.UnownedMemory(t.data_ptr(), t.numel() * t.element_size(), t, t.device.index)
    return cupy.ndarray(tuple(t.shape), dtype, cupy.cuda.MemoryPointer(memory, 0))


def _cuda_kernel(name, host):
    """The CUDA kernel of ``gvae::name``: ``host`` (see :func:`_define`) on CuPy views of the tensors,
    inside :func:`_on_stream`, its result back as a tensor over the same memory (DLPack, no copy)."""
    argnames = [a.name for a in getattr(torch.ops.gvae, name).default._schema.arguments]

    def kernel(*args, **kwargs):
        device = _cuda_device(name, list(zip(argnames, args)) + list(kwargs.items()))
        cupy = _cupy()
        with _on_stream(cupy, device, torch.cuda.current_stream(device)):
            return host(partial(_to_cupy, cupy), torch.from_dlpack, *args, **kwargs)
    return kernel


def _define(name, schema, host, fake):
    """Define ``gvae::name`` with its CPU and CUDA kernels and its fake.

    ``host(array, result, *args)`` is the operator's body, written once for both devices: it checks the
    dtypes, calls gvae's kernel with each tensor argument ``t`` as ``array(t)`` and returns ``result(out)``
    of its output: NumPy views and ``torch.from_numpy`` on the CPU, CuPy views and ``torch.from_dlpack``
    on CUDA (:func:`_cuda_kernel`)."""
    _lib.define(f"{name}{schema}")
    # A partial (C) rather than a closure: the CPU kernel is the eager path's, called on every call.
    cpu, cuda = partial(host, _np, torch.from_numpy), _cuda_kernel(name, host)
    _lib.impl(name, cpu, "CPU")
    _lib.impl(name, cuda, "CUDA")
    torch.library.register_fake(f"gvae::{name}", fake, lib=_lib)
    _OPS[name] = getattr(torch.ops.gvae, name).default
    _CPU[name], _CUDA[name], _FAKE[name] = cpu, cuda, fake


def _autograd(name, setup_context, backward, jvp):
    """Register ``gvae::name``'s derivatives: reverse mode (``backward``) and forward mode (``jvp``).

    ``setup_context(ctx, inputs, output)`` keeps what both need and returns the tensors to save;
    ``backward(ctx, *grads)`` and ``jvp(ctx, *tangents)`` read them from ``ctx.saved_tensors``. One
    ``torch.autograd.Function`` in the form ``torch.func`` requires (a separate ``setup_context``, a
    generated vmap rule) is the operator's Autograd kernel, so ``torch.func.grad``/``jacrev``/``jvp``/
    ``jacfwd``, ``torch.autograd.forward_ad`` and ``torch.compile`` all see the same rules.
    (``torch.library.register_autograd`` takes no forward-mode rule, and its Function has no
    ``setup_context``, which ``torch.func`` refuses.) The eager path (:func:`_call`) gets the same pair
    as a Function with the set-up inside ``forward``: PyTorch binds a separate ``setup_context``'s
    arguments with ``inspect`` on every call."""
    op, cpu = _OPS[name], _CPU[name]
    # The dispatcher drops trailing arguments equal to their defaults; the rules see every argument.
    defaults = [a.default_value for a in op._schema.arguments if a.has_default_value()]
    arity = len(op._schema.arguments)

    def below_autograd(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    def save(ctx, inputs, output):
        tensors = setup_context(ctx, inputs, output)
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)

    function = type(f"{name}_derivatives", (torch.autograd.Function,), {
        "forward": staticmethod(below_autograd), "setup_context": staticmethod(save),
        "backward": staticmethod(backward), "jvp": staticmethod(jvp), "generate_vmap_rule": True})
    _FUNCTION[name] = function

    def autograd_kernel(*args):
        args = args + tuple(defaults[len(defaults) - (arity - len(args)):])
        if torch._C._are_functorch_transforms_active():
            # Reached from inside a transform's level, where an autograd.Function can no longer be
            # entered (functorch hands it to each level from the top, before the dispatcher).
            raise NotImplementedError(
                f"torch.ops.gvae.{name} cannot be differentiated by torch.func transforms when called as "
                f"an operator; call gvae.torch.{name}, the same operator with its derivatives entered as "
                "torch.func requires")
        return function.apply(*args)
    _lib.impl(name, autograd_kernel, "Autograd")

    def forward(ctx, *args):
        out = cpu(*args)
        ctx.save_for_backward(*setup_context(ctx, args, out))
        return out
    _EAGER[name] = type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})


def _plain(tensors):
    """Whether a call on ``tensors`` outside torch.compile and torch.func may skip PyTorch's dispatcher:
    CPU tensors of the base class (no fake, functional or batched wrapper), nothing that intercepts
    operators (a dispatch or function mode) and no forward-mode AD (a ``dual_level``, whose tangents only
    the operator's Autograd kernel carries)."""
    if (torch._C._len_torch_dispatch_stack() or torch._C._len_torch_function_stack()
            or _forward_ad._current_level >= 0):
        return False
    for t in tensors:  # a loop and is_cpu: cheaper per call than all(...) and device.type
        if type(t) is not torch.Tensor or not t.is_cpu:
            return False
    return True


class _Leaf(tuple):
    """A tuple that torch.utils._pytree keeps whole (it flattens only the tuple type itself)."""


def _call(name, *args):
    """``torch.ops.gvae.name(*args)``, in eager mode on plain CPU tensors without the dispatcher.

    The dispatcher and the autograd kernel of ``torch.library`` cost, in Python, several times the kernel
    on small inputs; eagerly the same CPU kernel runs directly (no gradient wanted) or inside an
    ``autograd.Function`` with the registered backward (same values, same gradients). Under a torch.func
    transform the operator's Function is applied from the top; anything else that traces goes through
    the operator."""
    if torch.compiler.is_compiling():
        # Before the functorch query below, which Dynamo cannot trace. The checks run in the traced Python,
        # where Dynamo lets gvae's own exception reach the caller (raised from the fake implementation, it
        # would come wrapped in Dynamo's TorchRuntimeError).
        _FAKE[name](*args)
        return _OPS[name](*args)
    if torch._C._are_functorch_transforms_active():
        # From the top, where torch.func hands an autograd.Function to each of its levels in turn; the
        # offsets as one leaf of its argument tree (the rules return one derivative per argument).
        return _FUNCTION[name].apply(*(_Leaf(a) if isinstance(a, (tuple, list)) else a for a in args))
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not _plain(tensors):
        return _OPS[name](*args)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _EAGER[name].apply(*args)
    return _CPU[name](*args)


# --------------------------------------------------------------------------------------------------
# Forward operators
# --------------------------------------------------------------------------------------------------

def _vector_kernel(name, argname):
    def host(array, result, L, offsets, v, check=True):
        _dtype(name, [("L", L), (argname, v)])
        return result(getattr(_band, name)(array(L), offsets, array(v), check=check))

    def fake(L, offsets, v, check=True):
        _dtype(name, [("L", L), (argname, v)])
        CHECKS.factor(name, L, offsets)
        return L.new_empty(CHECKS.vector(name, argname, L, v))
    return host, fake


for _name, _arg in _VECTOR.items():
    _define(_name, f"(Tensor L, int[] offsets, Tensor {_arg}, bool check=True) -> Tensor",
                          *_vector_kernel(_name, _arg))


def _logdet_host(array, result, L, check=True):
    _dtype("band_logdet", [("L", L)])
    return result(_band.band_logdet(array(L), check=check))


def _logdet_fake(L, check=True):
    _dtype("band_logdet", [("L", L)])
    CHECKS.factor("band_logdet", L)
    return L.new_empty(L.shape[:-2])


_define("band_logdet", "(Tensor L, bool check=True) -> Tensor",
        _logdet_host, _logdet_fake)


def _sigma_kernel(name, per_row):
    def host(array, result, L, offsets, check=True):
        _dtype(name, [("L", L)])
        return result(getattr(_band, name)(array(L), offsets, check=check))

    def fake(L, offsets, check=True):
        _dtype(name, [("L", L)])
        _, n = CHECKS.factor(name, L, offsets)
        return L.new_empty(L.shape[:-2] + ((n,) if per_row else ()))
    return host, fake


for _name, _per_row in (("band_trace_inv", False), ("band_diag_inv", True)):
    _define(_name, "(Tensor L, int[] offsets, bool check=True) -> Tensor",
                          *_sigma_kernel(_name, _per_row))


# --------------------------------------------------------------------------------------------------
# The VJP kernels as operators
# --------------------------------------------------------------------------------------------------

def _outer_host(array, result, a, c, like, offsets, scale):
    _dtype("band_outer", [("a", a), ("c", c), ("like", like)])
    return result(_band.band_outer(array(a), array(c), offsets, like.shape[:-2], scale))


def _outer_fake(a, c, like, offsets, scale):
    _dtype("band_outer", [("a", a), ("c", c), ("like", like)])
    CHECKS.factor("band_outer", like, offsets)
    for argname, v in (("a", a), ("c", c)):
        CHECKS.vector("band_outer", argname, like, v)
    return like.new_empty(like.shape)


# like: a factor of the shape of the result (only its shape is read): the gradient's batch shape.
_define("band_outer", "(Tensor a, Tensor c, Tensor like, int[] offsets, float scale) -> Tensor",
        _outer_host, _outer_fake)


def _logdet_grad_host(array, result, L, g):
    _dtype("band_logdet_grad", [("L", L), ("g", g)])
    return result(_band.band_logdet_grad(array(L), array(g)))


def _logdet_grad_fake(L, g):
    _dtype("band_logdet_grad", [("L", L), ("g", g)])
    return L.new_empty(L.shape)


_define("band_logdet_grad", "(Tensor L, Tensor g) -> Tensor",
        _logdet_grad_host, _logdet_grad_fake)


def _sigma_grad_kernel(name):
    def host(array, result, L, offsets, g, check=True):
        _dtype(name, [("L", L), ("g", g)])
        return result(getattr(_band, name)(array(L), offsets, array(g), check=check))

    def fake(L, offsets, g, check=True):
        _dtype(name, [("L", L), ("g", g)])
        CHECKS.factor(name, L, offsets)
        return L.new_empty(L.shape)
    return host, fake


for _name in ("band_trace_inv_grad", "band_diag_inv_grad"):
    _define(_name, "(Tensor L, int[] offsets, Tensor g, bool check=True) -> Tensor", *_sigma_grad_kernel(_name))


# --------------------------------------------------------------------------------------------------
# Autograd: every backward is one of the operators above
# --------------------------------------------------------------------------------------------------

def _reduce(g, shape):
    """g summed down to ``shape`` (the gradient of a broadcast input), expanding first where g lacks
    axes that the input has."""
    shape = torch.Size(shape)
    if g.shape == shape:
        return g
    return g.expand(_broadcast_shapes(g.shape, shape)).sum_to_size(shape)


def _save_vector(ctx, inputs, output):
    L, offsets, v, _ = inputs
    ctx.offsets = offsets
    ctx.v_shape = v.shape
    return L, v, output


# The kernels of gvae.rules.band's VJPs: the operators, so that a backward traces (and differentiates) too.
_KERNELS = BandKernels(solve=lambda L, offsets, v: _call("band_solve", L, offsets, v, False),
                       solve_t=lambda L, offsets, v: _call("band_solve_t", L, offsets, v, False),
                       matvec=lambda L, offsets, v: _call("band_matvec", L, offsets, v, False),
                       matvec_t=lambda L, offsets, v: _call("band_matvec_t", L, offsets, v, False),
                       outer=partial(_call, "band_outer"))


def _vector_backward(rule):
    """The backward of a solve or product: ``rule`` of :data:`gvae.rules.band.VJP`, v's gradient reduced
    to v's shape."""
    def backward(ctx, g):
        L, v, y = ctx.saved_tensors
        gL, gv = rule(_KERNELS, L, ctx.offsets, v, y, g, ctx.needs_input_grad[0], ctx.needs_input_grad[2])
        return gL, None, (None if gv is None else _reduce(gv, ctx.v_shape)), None
    return backward


def _solve_jvp(transposed):
    """x = L^{-T} b: dx = L^{-T} (db - dL^T x); x = L^{-1} b: dx = L^{-1} (db - dL x). The tangent dL
    may have any diagonal (unchecked)."""
    solve, product = ("band_solve_t", "band_matvec_t") if transposed else ("band_solve", "band_matvec")

    def jvp(ctx, dL, _, db, __):
        L, _, x = ctx.saved_tensors
        r = None if dL is None else -_call(product, dL, ctx.offsets, x, False)
        r = db if r is None else r if db is None else db + r
        return _call(solve, L, ctx.offsets, r, False)
    return jvp


def _matvec_jvp(transposed):
    """y = L x: dy = dL x + L dx; y = L^T x: dy = dL^T x + L^T dx (bilinear in L and x)."""
    product = "band_matvec_t" if transposed else "band_matvec"

    def jvp(ctx, dL, _, dx, __):
        L, x, y = ctx.saved_tensors
        terms = ([] if dL is None else [_call(product, dL, ctx.offsets, x, False)]) + \
                ([] if dx is None else [_call(product, L, ctx.offsets, dx, False)])
        return terms[0].expand(y.shape) if len(terms) == 1 else terms[0] + terms[1]
    return jvp


for _name, _transposed in (("band_solve_t", True), ("band_solve", False)):
    _autograd(_name, _save_vector, _vector_backward(VJP[_name]), _solve_jvp(_transposed))
for _name, _transposed in (("band_matvec_t", True), ("band_matvec", False)):
    _autograd(_name, _save_vector, _vector_backward(VJP[_name]), _matvec_jvp(_transposed))


def _save_factor(ctx, inputs, output):
    ctx.offsets = inputs[1] if len(inputs) > 2 else None
    return (inputs[0],)


def _logdet_tangent(L, dL):
    """d log det L = sum_i dL_ii / L_ii."""
    return (dL[..., 0, :] / L[..., 0, :]).sum(-1)


def _logdet_jvp(ctx, dL, _):
    return _logdet_tangent(ctx.saved_tensors[0], dL)


_autograd("band_logdet", _save_factor,
          lambda ctx, g: (_call("band_logdet_grad", ctx.saved_tensors[0], g), None), _logdet_jvp)


def _trace_tangent(L, offsets, dL):
    """d tr(Sigma) = <G, dL> with G the gradient of tr(Sigma) (one VJP, O(n K w)); G is zero in the slots
    outside the matrix, so whatever the tangent holds there does not count."""
    G = _call("band_trace_inv_grad", L, offsets, L.new_ones(L.shape[:-2]), False)
    return torch.where(G != 0, G * dL, 0).sum((-2, -1))


def _trace_inv_jvp(ctx, dL, _, __):
    return _trace_tangent(ctx.saved_tensors[0], ctx.offsets, dL)


def _no_forward_mode(name, why):
    def jvp(ctx, *tangents):
        raise NotImplementedError(
            f"gvae.torch: forward-mode derivatives of {name} are not offered ({why}); use reverse mode "
            "(torch.autograd.grad, torch.func.grad or torch.func.jacrev)")
    return jvp


_autograd("band_trace_inv", _save_factor,
          lambda ctx, g: (_call("band_trace_inv_grad", ctx.saved_tensors[0], ctx.offsets, g, False), None, None),
          _trace_inv_jvp)
# diag(Sigma)'s tangent, -2 diag(Sigma dL L^-1), needs entries of Sigma and L^-1 outside the band: O(n^2)
# at least, where every other rule here is O(n K).
_autograd("band_diag_inv", _save_factor,
          lambda ctx, g: (_call("band_diag_inv_grad", ctx.saved_tensors[0], ctx.offsets, g, False), None, None),
          _no_forward_mode("band_diag_inv", "its tangent needs entries of the covariance outside the band, "
                                            "O(n^2) where gvae's kernels are O(n K)"))


def _save_outer(ctx, inputs, output):
    a, c, like, offsets, scale = inputs
    ctx.offsets, ctx.scale, ctx.a_shape, ctx.c_shape, ctx.like = offsets, scale, a.shape, c.shape, like
    return a, c


def _outer_backward(ctx, gG):
    """G[k, i] = s sum a_i c_{i-o_k}: ga = s (G-band) c = s band_matvec(gG, c), gc = s band_matvec_t(gG, a)
    (gG's diagonal is any sign: unchecked)."""
    a, c = ctx.saved_tensors
    ga = gc = None
    if ctx.needs_input_grad[0]:
        ga = _reduce(ctx.scale * _call("band_matvec", gG, ctx.offsets, c, False), ctx.a_shape)
    if ctx.needs_input_grad[1]:
        gc = _reduce(ctx.scale * _call("band_matvec_t", gG, ctx.offsets, a, False), ctx.c_shape)
    return ga, gc, None, None, None


def _outer_jvp(ctx, da, dc, *_):
    """G is bilinear in (a, c): dG = outer(da, c) + outer(a, dc), scaled alike."""
    a, c = ctx.saved_tensors
    terms = ([] if da is None else [_call("band_outer", da, c, ctx.like, ctx.offsets, ctx.scale)]) + \
            ([] if dc is None else [_call("band_outer", a, dc, ctx.like, ctx.offsets, ctx.scale)])
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


_autograd("band_outer", _save_outer, _outer_backward, _outer_jvp)


def _on_diagonal(diag, K):
    """The band (*batch, K, n) holding ``diag`` (*batch, n) on its main diagonal and zeros elsewhere,
    built out of place (an in-place write into zeros cannot be mapped by vmap)."""
    return torch.cat([diag[..., None, :], diag.new_zeros(diag.shape[:-1] + (K - 1, diag.shape[-1]))], -2)


def _save_logdet_grad(ctx, inputs, output):
    return inputs


def _logdet_grad_backward(ctx, gG):
    """G = g / L_0 on the main diagonal (zero elsewhere): elementwise, so written in PyTorch."""
    L, g = ctx.saved_tensors
    d = L[..., 0, :]
    h = gG[..., 0, :] / d
    gL = gg = None
    if ctx.needs_input_grad[0]:
        gL = _reduce(_on_diagonal(-h * g[..., None] / d, L.shape[-2]), L.shape)
    if ctx.needs_input_grad[1]:
        gg = _reduce(h.sum(-1), g.shape)
    return gL, gg


def _logdet_grad_jvp(ctx, dL, dg):
    """dG = dg / L_0 - g dL_0 / L_0^2 on the main diagonal, zero elsewhere."""
    L, g = ctx.saved_tensors
    d = L[..., 0, :]
    terms = ([] if dg is None else [dg[..., None] / d]) + \
            ([] if dL is None else [-g[..., None] * dL[..., 0, :] / (d * d)])
    return _on_diagonal(terms[0] if len(terms) == 1 else terms[0] + terms[1], L.shape[-2]).expand(L.shape)


_autograd("band_logdet_grad", _save_logdet_grad, _logdet_grad_backward, _logdet_grad_jvp)


def _no_double_backward(name, why="gvae has no second-order kernel of the selected inversion"):
    def backward(ctx, *grads):
        raise NotImplementedError(
            f"gvae.torch: double backward through {name} is not offered ({why}); use its first derivatives only")
    return backward


for _name in ("band_trace_inv", "band_diag_inv"):
    _autograd(f"{_name}_grad", lambda ctx, inputs, output: (), _no_double_backward(_name),
              _no_forward_mode(f"{_name}'s gradient", "gvae has no second-order kernel of the selected "
                                                      "inversion"))


# --------------------------------------------------------------------------------------------------
# The posterior's head of a VAE step as one operator (the maths: gvae.rules.head)
# --------------------------------------------------------------------------------------------------
# Per step a VAE asks q for a reparameterised sample, its log-density and the KL to the prior: on a band
# factor a solve, a log-determinant and a trace, then their VJPs, each an operator call that pays PyTorch's
# dispatcher, on CUDA a DLPack hand-over and, checked, a read of the device's flags (a synchronisation).
# band_head does the three in one call (one read), band_head_grad their backward in one (none); the maths
# and the kernel calls are gvae.rules.head's, shared with gvae.jax.

def _head_shapes(name, L, offsets, mu, eps):
    """The shapes of x, log q (z's without n: x's broadcast with mu's batch) and the KL (L's batch
    broadcast with mu's) of band_head's arguments, checked."""
    _dtype(name, [("L", L), ("mu", mu), ("eps", eps)])
    CHECKS.factor(name, L, offsets)
    x_shape, kl_shape = CHECKS.vector(name, "eps", L, eps), CHECKS.vector(name, "mu", L, mu)[:-1]
    return x_shape, _broadcast_shapes(x_shape[:-1], kl_shape), kl_shape


def _head_host(array, result, L, offsets, mu, eps, check=True):
    _head_shapes("band_head", L, offsets, mu, eps)
    Lh = array(L)
    return tuple(result(t) for t in head.forward(_band, array_module(Lh), Lh, offsets, array(mu), array(eps), check))


def _head_fake(L, offsets, mu, eps, check=True):
    x_shape, q_shape, kl_shape = _head_shapes("band_head", L, offsets, mu, eps)
    return L.new_empty(x_shape), L.new_empty(q_shape), L.new_empty(kl_shape)


_define("band_head", "(Tensor L, int[] offsets, Tensor mu, Tensor eps, bool check=True) -> (Tensor, Tensor, Tensor)",
        _head_host, _head_fake)


def _head_grad_args(L, mu, x, gx, glq, gkl):
    """L's batch shape and the KL's."""
    _dtype("band_head_grad", [(a, t) for a, t in (("L", L), ("mu", mu), ("x", x), ("gx", gx), ("glq", glq),
                                                  ("gkl", gkl)) if t is not None])
    return tuple(L.shape[:-2]), _broadcast_shapes(L.shape[:-2], mu.shape[:-1])


def _head_grad_host(array, result, L, offsets, mu, x, gx=None, glq=None, gkl=None):
    """(gL, gmu, gx_eps) of band_head (:func:`gvae.rules.head.backward`; the caller reduces them to its
    arguments' shapes)."""
    _head_grad_args(L, mu, x, gx, glq, gkl)
    Lh = array(L)
    cotangents = (None if g is None else array(g) for g in (gx, glq, gkl))
    return tuple(result(t) for t in head.backward(_band, array_module(Lh), Lh, offsets, array(mu), array(x),
                                                  *cotangents))


def _head_grad_fake(L, offsets, mu, x, gx=None, glq=None, gkl=None):
    _, kl_shape = _head_grad_args(L, mu, x, gx, glq, gkl)
    return L.new_empty(L.shape), L.new_empty(kl_shape + (L.shape[-1],)), L.new_empty(x.shape)


_define("band_head_grad", "(Tensor L, int[] offsets, Tensor mu, Tensor x, Tensor? gx=None, "
        "Tensor? glq=None, Tensor? gkl=None) -> (Tensor, Tensor, Tensor)", _head_grad_host, _head_grad_fake)


def _save_head(ctx, inputs, output):
    L, offsets, mu, eps = inputs[:4]
    ctx.offsets = offsets
    ctx.set_materialize_grads(False)  # an unused output's cotangent stays None: no work for it
    return L, mu, eps, output[0]


def _head_backward(ctx, gx, glq, gkl):
    L, mu, eps, x = ctx.saved_tensors
    gL, gmu, geps = _call("band_head_grad", L, ctx.offsets, mu, x, gx, glq, gkl)
    need = ctx.needs_input_grad
    if need[3]:
        geps = _reduce(geps, eps.shape)
        if glq is not None:
            geps = geps - _reduce(glq[..., None] * eps, eps.shape)
    return gL if need[0] else None, None, _reduce(gmu, mu.shape) if need[2] else None, geps if need[3] else None, None


def _head_jvp(ctx, dL, _, dmu, deps, __):
    """dx = L^-T (deps - dL^T x); d log q = d log det L - <eps, deps>; d KL = d tr(Sigma) / 2 + <mu, dmu> +
    d log det L."""
    L, mu, eps, x = ctx.saved_tensors
    r = None if dL is None else -_call("band_matvec_t", dL, ctx.offsets, x, False)
    r = deps if r is None else r if deps is None else deps + r
    dx = x.new_zeros(x.shape) if r is None else _call("band_solve_t", L, ctx.offsets, r, False).expand(x.shape)
    dlq = x.new_zeros(_broadcast_shapes(x.shape[:-1], mu.shape[:-1]))
    dkl = x.new_zeros(_broadcast_shapes(L.shape[:-2], mu.shape[:-1]))
    if dL is not None:
        dlogdet = _logdet_tangent(L, dL)
        dlq = dlq + dlogdet
        dkl = dkl + 0.5 * _trace_tangent(L, ctx.offsets, dL) + dlogdet
    if deps is not None:
        dlq = dlq - (eps * deps).sum(-1)
    if dmu is not None:
        dkl = dkl + (mu * dmu).sum(-1)
    return dx, dlq, dkl


_autograd("band_head", _save_head, _head_backward, _head_jvp)
# Its backward holds the selected inversion's gradient, which gvae cannot differentiate again.
_autograd("band_head_grad", lambda ctx, inputs, output: (), _no_double_backward("band_head"),
          _no_forward_mode("band_head's gradient", "gvae has no second-order kernel of the selected inversion"))


# --------------------------------------------------------------------------------------------------
# vmap: the operators batch natively, so a mapped axis becomes one more leading batch axis
# --------------------------------------------------------------------------------------------------

def _lead(t, dim, batch_ndim, core):
    """t with its mapped axis ``dim`` moved to the front and size-1 axes inserted after it, so that it
    has ``batch_ndim`` batch axes behind the mapped one; ``core`` trailing axes are not batch axes."""
    if dim is None:
        return t
    t = t.movedim(dim, 0)
    missing = batch_ndim - (t.dim() - 1 - core)
    return t[(slice(None),) + (None,) * missing] if missing > 0 else t


def _vmap_vector(name):
    def rule(info, in_dims, L, offsets, v, check=True):
        Ld, vd = in_dims[0], in_dims[2]
        m = max(L.dim() - 2 - (Ld is not None), v.dim() - 1 - (vd is not None))
        return _OPS[name](_lead(L, Ld, m, 2), offsets, _lead(v, vd, m, 1), check), 0
    return rule


for _name in _VECTOR:
    torch.library.register_vmap(f"gvae::{_name}", _vmap_vector(_name), lib=_lib)
torch.library.register_vmap("gvae::band_logdet",
                            lambda info, in_dims, L, check=True: (_OPS["band_logdet"](L.movedim(in_dims[0], 0), check), 0),
                            lib=_lib)
for _name in ("band_trace_inv", "band_diag_inv"):
    torch.library.register_vmap(
        f"gvae::{_name}",
        lambda info, in_dims, L, offsets, check=True, _op=_OPS[_name]: (_op(L.movedim(in_dims[0], 0), offsets, check), 0),
        lib=_lib)


def _mapped_before_batch(t, dim, batch_ndim, core):
    """t with its mapped axis (a size-1 one where ``dim`` is None) placed just before its last
    ``batch_ndim`` batch axes, size-1 axes added where it has fewer: the axes in front of it are the
    samples that a gradient kernel sums over, and the mapped axis lines up with the result's."""
    t = t.unsqueeze(0) if dim is None else t.movedim(dim, 0)
    lead = t.dim() - 1 - core
    if lead < batch_ndim:
        t = t[(slice(None),) + (None,) * (batch_ndim - lead)]
        lead = batch_ndim
    return t.movedim(0, lead - batch_ndim)


def _mapped_factor(info, L, dim):
    """A factor argument whose shape is the result's: the mapped axis in front, expanded where unmapped."""
    return L.movedim(dim, 0) if dim is not None else L.expand((info.batch_size,) + L.shape)


def _vmap_outer(info, in_dims, a, c, like, offsets, scale):
    m = like.dim() - 2 - (in_dims[2] is not None)
    return _OPS["band_outer"](_mapped_before_batch(a, in_dims[0], m, 1), _mapped_before_batch(c, in_dims[1], m, 1),
                              _mapped_factor(info, like, in_dims[2]), offsets, scale), 0


def _vmap_factor_grad(name, core):
    """The rule of a gradient kernel (L, [offsets,] g): the result has L's shape, g broadcasts against
    L's batch (``core`` trailing axes of g are not batch axes)."""
    def rule(info, in_dims, L, *rest):
        m = L.dim() - 2 - (in_dims[0] is not None)
        gi = 1 if name == "band_logdet_grad" else 2
        g = rest[gi - 1]
        g = _lead(g, in_dims[gi], m, core) if in_dims[gi] is not None else g
        args = list(rest)
        args[gi - 1] = g
        return _OPS[name](_mapped_factor(info, L, in_dims[0]), *args), 0
    return rule


torch.library.register_vmap("gvae::band_outer", _vmap_outer, lib=_lib)
for _name, _core in (("band_logdet_grad", 0), ("band_trace_inv_grad", 0), ("band_diag_inv_grad", 1)):
    torch.library.register_vmap(f"gvae::{_name}", _vmap_factor_grad(_name, _core), lib=_lib)


def _head_batch_ndim(L, Ld, mu, mud):
    """The number of batch axes of band_head's L and mu, not counting a mapped one."""
    return max(L.dim() - 2 - (Ld is not None), mu.dim() - 1 - (mud is not None))


def _vmap_head(info, in_dims, L, offsets, mu, eps, check=True):
    """The mapped axis becomes a batch axis of L and mu (in front of theirs) and of eps (just before its
    last m batch axes, behind the samples); x (when L or eps has it) and log q carry it there, the KL in
    front (when L or mu has it)."""
    Ld, mud, ed = in_dims[0], in_dims[2], in_dims[3]
    m = _head_batch_ndim(L, Ld, mu, mud)
    x, log_q, kl = _OPS["band_head"](_lead(L, Ld, m, 2), offsets, _lead(mu, mud, m, 1),
                                     _mapped_before_batch(eps, ed, m, 1), check)
    at = x.dim() - 2 - m
    if Ld is None and ed is None:  # x does not depend on mu: its mapped axis is the size-1 one eps got
        x, x_at = x.squeeze(at), None
    else:
        x_at = at
    return (x, log_q, kl), (x_at, at, 0 if Ld is not None or mud is not None else None)


def _carrying(info, t, dim, m, core):
    """t (mapped on ``dim``, or not: then expanded) with the mapped axis in front of m batch axes and
    ``core`` trailing ones, and a function that takes a result of that shape back to t's per-example one."""
    per_example = t.shape if dim is None else t.movedim(dim, 0).shape[1:]
    t = t.unsqueeze(0).expand((info.batch_size,) + t.shape) if dim is None else t.movedim(dim, 0)
    t = _lead(t, 0, m, core)
    return t, lambda r: r.reshape((info.batch_size,) + per_example)


def _vmap_head_grad(info, in_dims, L, offsets, mu, x, gx=None, glq=None, gkl=None):
    """Every result carries the mapped axis: L and mu are expanded along it where they lack it."""
    Ld, mud, xd, gxd, glqd, gkld = in_dims[0], *in_dims[2:]
    m = _head_batch_ndim(L, Ld, mu, mud)
    L2, L_back = _carrying(info, L, Ld, m, 2)
    mu2, _ = _carrying(info, mu, mud, m, 1)
    sample = [None if t is None else _mapped_before_batch(t, d, m, core)
              for t, d, core in ((x, xd, 1), (gx, gxd, 1), (glq, glqd, 0))]
    gkl2 = None if gkl is None else _lead(gkl, gkld, m, 0)
    gL, gmu, geps = _OPS["band_head_grad"](L2, offsets, mu2, *sample, gkl2)
    at = geps.dim() - 2 - m
    geps = geps.expand(geps.shape[:at] + (info.batch_size,) + geps.shape[at + 1:])  # zeros where no gx: size 1
    return (L_back(gL), gmu, geps), (0, 0, at)


torch.library.register_vmap("gvae::band_head", _vmap_head, lib=_lib)
torch.library.register_vmap("gvae::band_head_grad", _vmap_head_grad, lib=_lib)


# --------------------------------------------------------------------------------------------------
# Public functions (docs/api.md, "From PyTorch")
# --------------------------------------------------------------------------------------------------

def band_solve_t(L, offsets, b, *, check=True):
    """x with L^T x = b; L (*batch, K, n), b (*lead, n) broadcasting with batch; float32 or float64."""
    return _call("band_solve_t", L, offsets, b, check)


def band_solve(L, offsets, b, *, check=True):
    """x with L x = b (shapes as :func:`band_solve_t`)."""
    return _call("band_solve", L, offsets, b, check)


def band_matvec_t(L, offsets, x, *, check=True):
    """L^T x (shapes as :func:`band_solve_t`)."""
    return _call("band_matvec_t", L, offsets, x, check)


def band_matvec(L, offsets, x, *, check=True):
    """L x (shapes as :func:`band_solve_t`)."""
    return _call("band_matvec", L, offsets, x, check)


def band_logdet(L, *, check=True):
    """log det L = sum_i log L[..., 0, i], shape ``L.shape[:-2]``."""
    return _call("band_logdet", L, check)


def band_trace_inv(L, offsets, *, check=True):
    """tr((L L^T)^-1), exact, shape ``L.shape[:-2]``."""
    return _call("band_trace_inv", L, offsets, check)


def band_diag_inv(L, offsets, *, check=True):
    """diag((L L^T)^-1), exact, shape ``L.shape[:-2] + (n,)``."""
    return _call("band_diag_inv", L, offsets, check)


def band_head(L, offsets, mu, eps, *, check=True):
    """A VAE step's three uses of q = N(mu, (L L^T)^-1) in one operator and one backward:
    ``(z, log_q, kl)`` with z = mu + L^-T eps (the reparameterised sample, of eps's shape broadcast with
    L's batch), log_q = log q(z) (that shape without n) and kl = KL(q || N(0, I)) (L's batch broadcast
    with mu's). The same values and derivatives as ``mu + band_solve_t(L, offsets, eps)``, the log-density
    at it and the closed-form KL (log q from eps, which L^T (z - mu) equals). L (*batch, K, n); mu (*batch,
    n); eps (*S, *batch, n); float32 or float64."""
    x, log_q, kl = _call("band_head", L, offsets, mu, eps, check)
    return mu + x, log_q, kl

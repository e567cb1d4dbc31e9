"""The ``gvae::`` operators as ``torch.library`` defines them: schema, CPU and CUDA kernels, fake.

Each operator is defined with ``torch.library.Library`` (schema, CPU and CUDA kernels) rather than
``torch.library.custom_op``, whose Python layers cost more per call in eager mode; its ``register_fake``
(shape and dtype only, so ``torch.compile`` and ``torch.export`` trace through) checks the arguments as the
kernels do. The kernels' body is written once for both devices (:func:`_define`), the tensors handed over
by :mod:`gvae.torch.bridge`. ``check=True`` costs what it costs on CuPy arrays: one read of two flags from
the device per call (``check=False``, as in every backward, reads nothing). The dispatcher sends a call
mixing CPU and CUDA tensors to the CUDA kernel, which refuses it.

Besides the forward operators (docs/reference/api.md section 2), gvae's VJP kernels are operators too, so that a
backward traces: ``band_outer`` (the L-gradient of every solve and product), ``band_logdet_grad``,
``band_trace_inv_grad``, ``band_diag_inv_grad`` and ``band_head_grad``. Their derivatives are
:mod:`gvae.torch.derivatives`', their vmap rules :mod:`gvae.torch.vmap`'s."""
from functools import partial

import torch

from ..kernels import band as _band
from ..kernels.backend import array_module
from ..rules import head
from .bridge import _cuda_device, _cupy, _np, _on_stream, _to_cupy
from .checks import CHECKS, _broadcast_shapes, _dtype

_lib = torch.library.Library("gvae", "DEF")
# name -> operator overload, CPU kernel, CUDA kernel, fake (shape-only) kernel
_OPS, _CPU, _CUDA, _FAKE = {}, {}, {}, {}
_VECTOR = {"band_solve_t": "b", "band_solve": "b", "band_matvec_t": "x", "band_matvec": "x"}


def _cuda_kernel(name, host):
    """The CUDA kernel of ``gvae::name``: ``host`` (see :func:`_define`) on CuPy views of the tensors,
    inside :func:`gvae.torch.bridge._on_stream`, its result back as a tensor over the same memory (DLPack, no copy)."""
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

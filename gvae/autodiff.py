"""Reverse-mode automatic differentiation over a tape of primitives.

A ``Primitive`` wraps an array-level function. Called on plain arrays it just computes. Called with a
``Tracer`` among its arguments it computes on the underlying values, appends a node to the tape and
keeps, for the backward pass, a closure built by the primitive's VJP maker:

    maker(ans, *args, **kwargs) -> (lambda g: gradient wrt that argument)

Makers run at forward time and keep only what the backward pass needs (HIPS autograd's staging).
A primitive may instead register one joint maker, ``maker(ans, argnums, *args, **kwargs)`` returning
``g -> tuple of gradients`` (``None`` where not wanted), so that work shared between arguments (the
pre-activation gradient of a dense layer, say) is done once. A joint maker may come with a traced
forward ``forward(*args, **kwargs) -> (ans, residual)``, used only when tracing, whose ``residual``
(what a fused kernel computed for the backward pass in the same sweep) the maker receives in place of
``ans``. Gradients that come back with a broadcast shape are reduced to the argument's shape in one
place, :func:`gvae.rules.broadcast.unbroadcast`.

The tape never converts an array: values and gradients stay arrays of the device they were made on
(NumPy, CuPy, ...), and new ones come from that device's array module. ``value_and_grad(..., out=)``
writes the gradients into arrays the caller owns (views of one flat buffer, say); a joint maker
registered with ``into=True`` may write an argument's gradient straight into such an array.
"""
from .kernels.arithmetic import binary, copy_into, sum_axes
from .kernels.backend import array_module
from .rules.broadcast import unbroadcast

__all__ = ["Primitive", "primitive", "defvjp", "defvjp_joint", "Tracer", "value_and_grad", "grad", "value_of"]


class _Tape:
    """Nodes in creation order, which is a topological order of the graph."""

    __slots__ = ("nodes",)

    def __init__(self):
        self.nodes = []


class _Node:
    __slots__ = ("parents", "vjp", "joint", "into")

    def __init__(self, parents, vjp, joint=False, into=False):
        self.parents = parents  # tuple of (parent node index, shape, argument position)
        # joint: g -> gradients of every argument, indexed by position (g, into -> the same if into);
        # otherwise a tuple of functions g -> gradient, one per parent; None for a leaf
        self.vjp = vjp
        self.joint = joint
        self.into = into        # whether vjp takes destinations {argument position: array}


class Tracer:
    """A value recorded on a tape. Supports ``+ - * / ** @``, unary ``-``, indexing, ``.T``."""

    __slots__ = ("value", "tape", "node")
    # An array of any device on the left of an operator (NumPy's, CuPy's) defers to Tracer's reflected
    # operator: both honour __array_ufunc__ = None (CuPy would not defer to a mere __array_priority__).
    __array_ufunc__ = None

    def __init__(self, value, tape, node):
        self.value = value
        self.tape = tape
        self.node = node

    shape = property(lambda self: self.value.shape)
    ndim = property(lambda self: self.value.ndim)
    dtype = property(lambda self: self.value.dtype)
    size = property(lambda self: self.value.size)

    def __len__(self):
        return len(self.value)

    def __repr__(self):
        return f"Tracer({self.value!r})"

    # Operators are bound in gvae.ops (which owns the primitives) to keep this module free of maths.


def value_of(x):
    """The plain array behind ``x`` (``x`` itself when it is not traced)."""
    return x.value if isinstance(x, Tracer) else x


class Primitive:
    """A differentiable function: forward ``fun`` plus VJP makers registered with :func:`defvjp`."""

    def __init__(self, fun, name=None):
        self.fun = fun
        self.name = name or fun.__name__
        self.makers = {}
        self.joint = None
        self.traced_forward = None
        self.into = False
        self.__doc__ = fun.__doc__
        self.__name__ = self.name
        self.__wrapped__ = fun  # inspect.signature (help(), the API reference) shows fun's arguments

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __call__(self, *args, **kwargs):
        for a in args:
            if isinstance(a, Tracer):
                tape = a.tape
                break
        else:
            return self.fun(*args, **kwargs)
        # One pass over the arguments: their values, and the traced ones' (node, shape, position).
        raw, parents = [], []
        for i, a in enumerate(args):
            if isinstance(a, Tracer):
                if a.tape is not tape:
                    raise ValueError(f"{self.name}: arguments come from two different traces")
                value = a.value
                parents.append((a.node, value.shape, i))
                raw.append(value)
            else:
                raw.append(a)
        if self.traced_forward is not None:
            ans, residual = self.traced_forward(*raw, **kwargs)
        else:
            ans = residual = self.fun(*raw, **kwargs)
        if self.joint is not None:
            vjp = self.joint(residual, tuple(pos for _, _, pos in parents), *raw, **kwargs)
        else:
            vjp = tuple(self._maker(pos)(residual, *raw, **kwargs) for _, _, pos in parents)
        nodes = tape.nodes
        nodes.append(_Node(tuple(parents), vjp, self.joint is not None, self.into))
        return Tracer(ans, tape, len(nodes) - 1)

    def _maker(self, i):
        maker = self.makers.get(i)
        if maker is None:
            raise TypeError(f"VJP of {self.name} wrt argument {i} not defined: it cannot be differentiated")
        return maker


def primitive(fun=None, *, name=None):
    """Decorator turning an array-level function into a :class:`Primitive`."""
    if fun is None:
        return lambda f: Primitive(f, name)
    return Primitive(fun, name)


def defvjp(prim, *makers):
    """Register one VJP maker per positional argument (``None``: that argument has no gradient)."""
    for i, maker in enumerate(makers):
        if maker is not None:
            prim.makers[i] = maker
    return prim


def defvjp_joint(prim, maker, forward=None, into=False):
    """Register ``maker(ans, argnums, *args, **kw) -> (g -> tuple of gradients for all args)``.

    With ``forward(*args, **kw) -> (ans, residual)`` traced calls run ``forward`` instead and the
    maker receives ``residual`` as its first argument. With ``into`` the maker's closure is called
    ``(g, into)``, ``into`` a dict {argument position: array of that argument's shape and dtype}: it may
    write that argument's gradient into the array and return the array itself (no copy is made then)."""
    prim.joint = maker
    prim.traced_forward = forward
    prim.into = into
    return prim


def _backward(tape, out_index, g_out, sinks):
    """Propagate ``g_out`` from node ``out_index`` back to every leaf. Leaves in ``sinks`` ({node index:
    array}) get their gradient written (then accumulated) into that array, every sink is written (zero
    where no gradient arrives); the others' gradients are returned as {node index: grad}."""
    grads = {out_index: g_out}
    filled = set()
    nodes = tape.nodes
    for index in range(out_index, -1, -1):
        g = grads.get(index)
        if g is None:
            continue
        node = nodes[index]
        vjp = node.vjp
        if vjp is None:  # a leaf: its gradient stays in grads
            continue
        del grads[index]
        into = {}
        if node.joint:
            if node.into:
                for parent, _, pos in node.parents:
                    if parent in sinks and parent not in filled and all(a is not sinks[parent] for a in into.values()):
                        into[pos] = sinks[parent]
                pgs = vjp(g, into)
            else:
                pgs = vjp(g)
        for k, (parent, shape, pos) in enumerate(node.parents):
            pg = pgs[pos] if node.joint else vjp[k](g)
            if pg is None:
                continue
            if pg.shape != shape:
                pg = unbroadcast(pg, shape, sum_axes)
            sink = sinks.get(parent)
            if sink is None:
                prev = grads.get(parent)
                grads[parent] = pg if prev is None else binary("add", prev, pg)
                continue
            if pg is not into.get(pos):  # (when it is, the VJP has written the sink itself)
                if parent in filled:
                    binary("add", sink, pg, out=sink)
                else:
                    copy_into(pg, sink)
            filled.add(parent)
    for index, sink in sinks.items():
        if index not in filled:
            copy_into(0.0, sink)
    return grads


def _leaves(tree, tape):
    """Wrap every array leaf of ``tree`` (an array or a dict of arrays) as a leaf Tracer."""
    if isinstance(tree, dict):
        return {k: _leaves(v, tape) for k, v in tree.items()}
    if isinstance(tree, Tracer):
        raise TypeError("value_and_grad: nested differentiation is not supported")
    if getattr(getattr(tree, "dtype", None), "kind", None) != "f":
        what = f"dtype {tree.dtype}" if hasattr(tree, "dtype") else type(tree).__name__
        raise TypeError(f"value_and_grad: can only differentiate floating arrays, got {what}")
    tape.nodes.append(_Node((), None))
    return Tracer(tree, tape, len(tape.nodes) - 1)


def _sinks(wrapped, out, found, where="out"):
    """Pair each leaf Tracer of ``wrapped`` with the array at the same place in ``out``, into ``found``."""
    if isinstance(wrapped, dict):
        if not isinstance(out, dict) or set(out) != set(wrapped):
            raise ValueError(f"value_and_grad: {where} must be a dict with the keys {sorted(wrapped)}")
        for k in wrapped:
            _sinks(wrapped[k], out[k], found, f"{where}[{k!r}]")
        return
    v = wrapped.value
    if getattr(out, "shape", None) != v.shape or getattr(out, "dtype", None) != v.dtype:
        raise ValueError(f"value_and_grad: {where} must be an array of shape {v.shape} and dtype {v.dtype} "
                         "(the argument's)")
    found[wrapped.node] = out


def _collect(wrapped, grads):
    if isinstance(wrapped, dict):
        return {k: _collect(v, grads) for k, v in wrapped.items()}
    v = wrapped.value
    g = grads.get(wrapped.node)
    if g is None:
        return array_module(v).zeros_like(v)
    return g.astype(v.dtype, copy=False).reshape(v.shape)


def _strip(tree):
    if isinstance(tree, dict):
        return {k: _strip(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_strip(v) for v in tree)
    return value_of(tree)


def value_and_grad(f, argnums=0, has_aux=False, out=None):
    """``f(*args) -> scalar``; returns ``g(*args) -> (value, gradient)``.

    ``argnums`` is an int or a tuple of ints; each chosen argument is an array or a dict of arrays and
    its gradient has the same structure and dtype. With ``has_aux`` ``f`` returns ``(scalar, aux)`` and
    ``g`` returns ``((value, aux), gradient)`` with ``aux`` stripped of tracing. ``out`` (a tuple of them
    for a tuple ``argnums``): arrays of the gradient's structure, shapes and dtypes that every call writes
    the gradient into and returns, instead of new arrays. The value is a 0-d array of the device's (a
    NumPy scalar on the CPU): reading it on the host is left to the caller.

    >>> import numpy as np
    >>> from gvae import ops, value_and_grad
    >>> value, gradient = value_and_grad(lambda x: ops.sum(x * x))(np.array([1.0, -2.0]))
    >>> float(value), gradient
    (5.0, array([ 2., -4.]))
    """
    multi = isinstance(argnums, (tuple, list))
    nums = tuple(argnums) if multi else (argnums,)
    outs = (tuple(out) if multi else (out,)) if out is not None else (None,) * len(nums)
    if len(outs) != len(nums):
        raise ValueError(f"value_and_grad: out holds {len(outs)} trees for {len(nums)} differentiated arguments")

    def wrapped(*args, **kwargs):
        tape = _Tape()
        args = list(args)
        sinks = {}
        for i, o in zip(nums, outs):
            if i >= len(args):
                raise TypeError(f"value_and_grad: argnums {i} but only {len(args)} arguments given")
            args[i] = _leaves(args[i], tape)
            if o is not None:
                _sinks(args[i], o, sinks)
        result = f(*args, **kwargs)
        aux = None
        if has_aux:
            result, aux = result
        if not isinstance(result, Tracer):
            raise TypeError("value_and_grad: the function's output does not depend on the "
                            f"differentiated arguments (got {type(result).__name__})")
        if result.value.size != 1:
            raise ValueError(f"value_and_grad: the function must return a scalar, got shape {result.shape}")
        value = result.value.reshape(())
        grads = _backward(tape, result.node, array_module(value).ones_like(value), sinks)
        gs = tuple(_collect(args[i], grads) if o is None else o for i, o in zip(nums, outs))
        value = value[()]
        if has_aux:
            value = (value, _strip(aux))
        return value, (gs if multi else gs[0])

    return wrapped


def grad(f, argnums=0):
    """The gradient alone of :func:`value_and_grad`."""
    vg = value_and_grad(f, argnums)
    return lambda *a, **k: vg(*a, **k)[1]

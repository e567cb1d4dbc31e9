"""Reverse-mode automatic differentiation over a tape of primitives.

A ``Primitive`` wraps a NumPy-level function. Called on plain arrays it just computes. Called with a
``Tracer`` among its arguments it computes on the underlying values, appends a node to the tape and
keeps, for the backward pass, a closure built by the primitive's VJP maker:

    maker(ans, *args, **kwargs) -> (lambda g: gradient wrt that argument)

Makers run at forward time and keep only what the backward pass needs (HIPS autograd's staging).
A primitive may instead register one joint maker, ``maker(ans, argnums, *args, **kwargs)`` returning
``g -> tuple of gradients`` (``None`` where not wanted), so that work shared between arguments (the
pre-activation gradient of a dense layer, say) is done once. A joint maker may come with a traced
forward ``forward(*args, **kwargs) -> (ans, residual)``, used only when tracing, whose ``residual``
(what a fused kernel computed for the backward pass in the same sweep) the maker receives in place of
``ans``. Gradients that come back with a
broadcast shape are reduced to the argument's shape in one place, :func:`unbroadcast`.
"""
import numpy as np

__all__ = ["Primitive", "primitive", "defvjp", "defvjp_joint", "Tracer", "value_and_grad", "grad",
           "unbroadcast", "value_of"]


class _Tape:
    """Nodes in creation order, which is a topological order of the graph."""

    __slots__ = ("nodes",)

    def __init__(self):
        self.nodes = []


class _Node:
    __slots__ = ("parents", "vjp", "index")

    def __init__(self, parents, vjp, index):
        self.parents = parents  # tuple of (parent node index, shape, argument position)
        self.vjp = vjp          # g -> tuple of gradients, one per parent
        self.index = index


class Tracer:
    """A value recorded on a tape. Supports ``+ - * / ** @``, unary ``-``, indexing, ``.T``."""

    __slots__ = ("value", "tape", "node")
    __array_priority__ = 100.0  # so that ndarray (op) Tracer defers to Tracer's reflected operator

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
        self.__doc__ = fun.__doc__
        self.__name__ = self.name

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __call__(self, *args, **kwargs):
        tape = None
        argnums = []
        for i, a in enumerate(args):
            if isinstance(a, Tracer):
                if tape is None:
                    tape = a.tape
                elif a.tape is not tape:
                    raise ValueError(f"{self.name}: arguments come from two different traces")
                argnums.append(i)
        if tape is None:
            return self.fun(*args, **kwargs)
        raw = [a.value if isinstance(a, Tracer) else a for a in args]
        if self.traced_forward is not None:
            ans, residual = self.traced_forward(*raw, **kwargs)
        else:
            ans = residual = self.fun(*raw, **kwargs)
        vjp = self._vjp(residual, tuple(argnums), raw, kwargs)
        parents = tuple((args[i].node, np.shape(raw[i]), i) for i in argnums)
        node = _Node(parents, vjp, len(tape.nodes))
        tape.nodes.append(node)
        return Tracer(ans, tape, node.index)

    def _vjp(self, ans, argnums, raw, kwargs):
        if self.joint is not None:
            joint = self.joint(ans, argnums, *raw, **kwargs)
            return lambda g: _select(joint(g), argnums)
        fns = []
        for i in argnums:
            maker = self.makers.get(i)
            if maker is None:
                raise TypeError(f"VJP of {self.name} wrt argument {i} not defined: it cannot be differentiated")
            fns.append(maker(ans, *raw, **kwargs))
        return lambda g: [f(g) for f in fns]


def _select(grads, argnums):
    return [grads[i] for i in argnums]


def primitive(fun=None, *, name=None):
    """Decorator turning a NumPy-level function into a :class:`Primitive`."""
    if fun is None:
        return lambda f: Primitive(f, name)
    return Primitive(fun, name)


def defvjp(prim, *makers):
    """Register one VJP maker per positional argument (``None``: that argument has no gradient)."""
    for i, maker in enumerate(makers):
        if maker is not None:
            prim.makers[i] = maker
    return prim


def defvjp_joint(prim, maker, forward=None):
    """Register ``maker(ans, argnums, *args, **kw) -> (g -> tuple of gradients for all args)``.

    With ``forward(*args, **kw) -> (ans, residual)`` traced calls run ``forward`` instead and the
    maker receives ``residual`` as its first argument."""
    prim.joint = maker
    prim.traced_forward = forward
    return prim


def unbroadcast(g, shape):
    """Sum ``g`` over the axes that NumPy broadcasting added or stretched to reach ``g.shape``."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def _backward(tape, out_index, g_out):
    """Propagate ``g_out`` from node ``out_index`` back to every leaf; returns {node index: grad}."""
    grads = {out_index: g_out}
    nodes = tape.nodes
    for index in range(out_index, -1, -1):
        g = grads.get(index)
        node = nodes[index]
        if g is None or node.vjp is None:
            continue
        del grads[index]
        for (parent, shape, _), pg in zip(node.parents, node.vjp(g)):
            if pg is None:
                continue
            pg = unbroadcast(np.asarray(pg), shape)
            prev = grads.get(parent)
            grads[parent] = pg if prev is None else prev + pg
    return grads


def _leaves(tree, tape):
    """Wrap every array leaf of ``tree`` (an array or a dict of arrays) as a leaf Tracer."""
    if isinstance(tree, dict):
        return {k: _leaves(v, tape) for k, v in tree.items()}
    if isinstance(tree, Tracer):
        raise TypeError("value_and_grad: nested differentiation is not supported")
    arr = np.asarray(tree)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"value_and_grad: can only differentiate floating arrays, got dtype {arr.dtype}")
    node = _Node((), None, len(tape.nodes))
    tape.nodes.append(node)
    return Tracer(arr, tape, node.index)


def _collect(wrapped, grads):
    if isinstance(wrapped, dict):
        return {k: _collect(v, grads) for k, v in wrapped.items()}
    g = grads.get(wrapped.node)
    if g is None:
        return np.zeros_like(wrapped.value)
    return np.asarray(g, dtype=wrapped.value.dtype).reshape(wrapped.value.shape)


def _strip(tree):
    if isinstance(tree, dict):
        return {k: _strip(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_strip(v) for v in tree)
    return value_of(tree)


def value_and_grad(f, argnums=0, has_aux=False):
    """``f(*args) -> scalar``; returns ``g(*args) -> (value, gradient)``.

    ``argnums`` is an int or a tuple of ints; each chosen argument is an array or a dict of arrays and
    its gradient has the same structure and dtype. With ``has_aux`` ``f`` returns ``(scalar, aux)`` and
    ``g`` returns ``((value, aux), gradient)`` with ``aux`` stripped of tracing.
    """
    multi = isinstance(argnums, (tuple, list))
    nums = tuple(argnums) if multi else (argnums,)

    def wrapped(*args, **kwargs):
        tape = _Tape()
        args = list(args)
        for i in nums:
            if i >= len(args):
                raise TypeError(f"value_and_grad: argnums {i} but only {len(args)} arguments given")
            args[i] = _leaves(args[i], tape)
        out = f(*args, **kwargs)
        aux = None
        if has_aux:
            out, aux = out
        if not isinstance(out, Tracer):
            raise TypeError("value_and_grad: the function's output does not depend on the "
                            f"differentiated arguments (got {type(out).__name__})")
        if out.value.size != 1:
            raise ValueError(f"value_and_grad: the function must return a scalar, got shape {out.shape}")
        value = out.value.reshape(())
        grads = _backward(tape, out.node, np.ones_like(out.value))
        gs = tuple(_collect(args[i], grads) for i in nums)
        result = value[()]
        if has_aux:
            result = (result, _strip(aux))
        return result, (gs if multi else gs[0])

    return wrapped


def grad(f, argnums=0):
    """The gradient alone of :func:`value_and_grad`."""
    vg = value_and_grad(f, argnums)
    return lambda *a, **k: vg(*a, **k)[1]

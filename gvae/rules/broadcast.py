"""Unbroadcasting: the gradient of an argument that broadcasting stretched, summed back to its shape."""


def unbroadcast(g, shape):
    """``g`` summed over the axes that broadcasting added (leading ones) or stretched (size 1 in ``shape``)
    to reach ``g.shape``, in that order: two reductions at most, then a reshape to ``shape``.

    For any array with NumPy's ``sum(axis=, keepdims=)`` and ``reshape``: NumPy's, CuPy's, JAX's (gvae's
    tape and gvae.jax). PyTorch has the reduction as one operator of its own, ``Tensor.sum_to_size``,
    which gvae.torch uses."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)

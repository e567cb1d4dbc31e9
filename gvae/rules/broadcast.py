"""Unbroadcasting: the gradient of an argument that broadcasting stretched, summed back to its shape."""


def _sum(g, axis, keepdims):
    return g.sum(axis=axis, keepdims=keepdims)


def unbroadcast(g, shape, total=_sum):
    """``g`` summed over the axes that broadcasting added (leading ones) or stretched (size 1 in ``shape``)
    to reach ``g.shape``, in that order: two reductions at most, then a reshape to ``shape``.

    The sums are ``total(g, axis, keepdims)``: by default the array's own ``sum``, for any array with
    NumPy's ``sum(axis=, keepdims=)`` and ``reshape`` (NumPy's, CuPy's, JAX's: gvae.jax); gvae's tape
    passes its kernels' (:func:`gvae.kernels.sum_axes`). PyTorch has the reduction as one operator of its
    own, ``Tensor.sum_to_size``, which gvae.torch uses."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = total(g, tuple(range(extra)), False)
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = total(g, stretched, True)
    return g.reshape(shape)

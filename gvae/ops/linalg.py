"""Matrix products and the fused dense layer."""
import numpy as np

from .. import kernels
from ..autodiff import defvjp, defvjp_joint, primitive

__all__ = ["matmul", "dense"]


def _product(a, b):
    """a @ b: float arrays of one dtype, b a matrix and a a matrix or a stack of them (samples of a batch,
    taken as the rows of one matrix), through gvae's product (on CUDA gvae's own cuBLAS handle, which a
    CUDA graph can record, where CuPy's ``@`` refuses a capture; on the CPU a kernel a recorded step holds);
    anything else through ``@``."""
    if a.ndim >= 2 and b.ndim == 2 and a.dtype == b.dtype and a.dtype in (np.float32, np.float64):
        if a.ndim == 2:
            return kernels.matmul(a, b)
        rows = kernels.contiguous(a).reshape(-1, a.shape[-1])
        return kernels.matmul(rows, b).reshape(a.shape[:-1] + (b.shape[1],))
    return a @ b


def _b_gradient(ans, a, b):
    """The VJP of a @ b for b: a^T g, summed over a's stacked matrices when b is one matrix (one product of
    their rows)."""
    if b.ndim == 2 and a.ndim > 2:
        return lambda g: _product(kernels.contiguous(a).reshape(-1, a.shape[-1]).T,
                                  kernels.contiguous(g).reshape(-1, g.shape[-1]))
    return lambda g: _product(a.swapaxes(-1, -2), g)


@primitive
def matmul(a, b):
    """a @ b for arrays of rank >= 2 (batch dims broadcast)."""
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: expected arrays of rank >= 2, got shapes {a.shape} and {b.shape}")
    return _product(a, b)


defvjp(matmul, lambda ans, a, b: lambda g: _product(g, b.swapaxes(-1, -2)), _b_gradient)


@primitive
def dense(x, W, b, activation="linear"):
    """act(x @ W + b) for x (..., Din), W (Din, Dout), b (Dout,); bias and activation fused."""
    x2 = x.reshape(-1, x.shape[-1])
    h = kernels.matmul(x2, W)
    kernels.bias_activation(h, b, activation)
    return h.reshape(x.shape[:-1] + (W.shape[1],))


def _dense_vjp(ans, argnums, x, W, b, activation="linear"):
    x2 = x.reshape(-1, x.shape[-1])

    def vjp(g, into):
        # The weight gradient, the largest, goes straight into the caller's buffer when there is one.
        y2 = ans.reshape(-1, ans.shape[-1])
        gh, gb = kernels.bias_activation_grad(kernels.contiguous(g).reshape(y2.shape), y2, activation)
        wanted = [k for k in (0, 1) if k in argnums]
        products = {0: (gh, W.T, None), 1: (x2.T, gh, into.get(1))}
        found = dict(zip(wanted, kernels.matmuls([products[k] for k in wanted])))  # side by side
        gx = found[0].reshape(x.shape) if 0 in found else None
        return gx, found.get(1), gb, None
    return vjp


defvjp_joint(dense, _dense_vjp, into=True)

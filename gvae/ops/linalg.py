"""Matrix products and the fused dense layer."""
import numpy as np

from .. import kernels
from ..autodiff import defvjp, defvjp_joint, primitive

__all__ = ["matmul", "dense"]


@primitive
def matmul(a, b):
    """a @ b for arrays of rank >= 2 (batch dims broadcast)."""
    if np.ndim(a) < 2 or np.ndim(b) < 2:
        raise ValueError(f"matmul: expected arrays of rank >= 2, got shapes {np.shape(a)} and {np.shape(b)}")
    return np.matmul(a, b)


defvjp(matmul,
       lambda ans, a, b: lambda g: np.matmul(g, np.swapaxes(b, -1, -2)),
       lambda ans, a, b: lambda g: np.matmul(np.swapaxes(a, -1, -2), g))


@primitive
def dense(x, W, b, activation="linear"):
    """act(x @ W + b) for x (..., Din), W (Din, Dout), b (Dout,); bias and activation fused."""
    x2 = x.reshape(-1, x.shape[-1])
    h = x2 @ W
    kernels.bias_activation(h, b, activation)
    return h.reshape(x.shape[:-1] + (W.shape[1],))


def _dense_vjp(ans, argnums, x, W, b, activation="linear"):
    x2 = x.reshape(-1, x.shape[-1])

    def vjp(g):
        y2 = ans.reshape(-1, ans.shape[-1])
        gh, gb = kernels.bias_activation_grad(np.ascontiguousarray(g.reshape(y2.shape)), y2, activation)
        gx = (gh @ W.T).reshape(x.shape) if 0 in argnums else None
        gW = x2.T @ gh if 1 in argnums else None
        return gx, gW, gb, None
    return vjp


defvjp_joint(dense, _dense_vjp)

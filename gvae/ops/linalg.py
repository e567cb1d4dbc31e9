"""Matrix products and the fused dense layer."""
from .. import kernels
from ..autodiff import defvjp, defvjp_joint, primitive
from ..kernels import array_module

__all__ = ["matmul", "dense"]


@primitive
def matmul(a, b):
    """a @ b for arrays of rank >= 2 (batch dims broadcast)."""
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: expected arrays of rank >= 2, got shapes {a.shape} and {b.shape}")
    return a @ b


defvjp(matmul,
       lambda ans, a, b: lambda g: g @ b.swapaxes(-1, -2),
       lambda ans, a, b: lambda g: a.swapaxes(-1, -2) @ g)


@primitive
def dense(x, W, b, activation="linear"):
    """act(x @ W + b) for x (..., Din), W (Din, Dout), b (Dout,); bias and activation fused."""
    x2 = x.reshape(-1, x.shape[-1])
    h = x2 @ W
    kernels.bias_activation(h, b, activation)
    return h.reshape(x.shape[:-1] + (W.shape[1],))


def _dense_vjp(ans, argnums, x, W, b, activation="linear"):
    x2 = x.reshape(-1, x.shape[-1])

    def vjp(g, into):
        # The weight gradient, the largest, goes straight into the caller's buffer when there is one.
        xp = array_module(g, ans)
        y2 = ans.reshape(-1, ans.shape[-1])
        gh, gb = kernels.bias_activation_grad(xp.ascontiguousarray(g.reshape(y2.shape)), y2, activation)
        gx = (gh @ W.T).reshape(x.shape) if 0 in argnums else None
        gW = xp.matmul(x2.T, gh, out=into.get(1)) if 1 in argnums else None
        return gx, gW, gb, None
    return vjp


defvjp_joint(dense, _dense_vjp, into=True)

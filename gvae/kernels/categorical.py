"""The log-probability of class labels under a softmax of logits, with the softmax its gradient needs."""
from . import categorical_cpu  # noqa: F401  (registers the CPU kernel)
from .arithmetic import contiguous
from .backend import array_module, implementation
from .checks import float_array


def _label_rows(name, logits, labels):
    """logits as (M, C) rows and labels as (R,) with M % R == 0 (R the labels' count), checked."""
    float_array(f"{name} logits", logits)
    if getattr(labels, "dtype", None) is None or labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be an integer array, got {type(labels).__name__}")
    if logits.ndim < 1 or logits.shape[logits.ndim - 1 - labels.ndim:-1] != labels.shape:
        raise ValueError(f"{name}: labels of shape {labels.shape} do not match logits {logits.shape} "
                         "(*S, *B, C) over *B")
    return contiguous(logits).reshape(-1, logits.shape[-1]), labels.reshape(-1)


def categorical_log_prob(logits, labels):
    """(log softmax(l)_y, softmax(l)) over the last axis: logits (*S, *B, C) float, labels (*B,) integers in
    0..C-1 (not checked here: gvae.ops checks them) shared by the S samples -> log_p (*S, *B) and probs
    (*S, *B, C), of the logits' dtype (the log-sum-exp in float64, shifted by the row's maximum)."""
    l2, y = _label_rows("categorical_log_prob", logits, labels)
    probs = array_module(logits).empty(l2.shape, l2.dtype)
    out = implementation("categorical_log_prob", l2)(l2, y, probs)
    return out.reshape(logits.shape[:-1]), probs.reshape(logits.shape)


def categorical_grad(g, labels, probs):
    """d(sum g log_p)/dl = g[..., None] ([c = y] - probs) for the cotangent g (*S, *B) and
    :func:`categorical_log_prob`'s probs (*S, *B, C) -> (*S, *B, C)."""
    p2, y = _label_rows("categorical_grad", probs, labels)
    if tuple(g.shape) != tuple(probs.shape[:-1]):
        raise ValueError(f"categorical_grad: g of shape {g.shape} does not match probs {probs.shape}")
    out = array_module(probs).empty(p2.shape, p2.dtype)
    implementation("categorical_grad", p2)(contiguous(g).reshape(-1), y, p2, out)
    return out.reshape(probs.shape)

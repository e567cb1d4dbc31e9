"""CUDA twin of :mod:`categorical_cpu` (source: ``categorical.cu``): a softmax's log-probability of labels
and its gradient, one thread per row."""
from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("categorical.cu", ["categorical_log_prob<{T}>", "categorical_grad<{T}>"])


def _labels(cupy, labels):
    """The labels as a contiguous int64 array on the device (the kernels read them as long long)."""
    return cupy.ascontiguousarray(labels if labels.dtype == cupy.int64 else labels.astype(cupy.int64))


@register("categorical_log_prob", "cuda")
def categorical_log_prob(logits, labels, probs):
    """out (M,) = log softmax(logits)_y by rows, probs (M, C) = softmax(logits); labels (R,), M % R == 0."""
    import cupy
    y = _labels(cupy, labels)
    contiguous("categorical_log_prob", logits, probs)
    m, c, r = int32("categorical_log_prob", *logits.shape, y.shape[0])
    with logits.device:
        out = cupy.empty(int(m), dtype=logits.dtype)
        if m:
            SOURCE.function("categorical_log_prob<{T}>", logits.dtype)(
                (grid_for(m, 256, logits),), (256,), (logits, y, probs, out, m, c, r))
    return out


@register("categorical_grad", "cuda")
def categorical_grad(g, labels, probs, out):
    """out (M, C) = g[:, None] ([c = y] - probs) by rows."""
    import cupy
    y = _labels(cupy, labels)
    contiguous("categorical_grad", g, probs, out)
    m, c, r = int32("categorical_grad", *probs.shape, y.shape[0])
    if m:
        with probs.device:
            SOURCE.function("categorical_grad<{T}>", probs.dtype)(
                (grid_for(m, 256, probs),), (256,), (g, y, probs, out, m, c, r))

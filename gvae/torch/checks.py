"""The argument checks of gvae.torch on tensors (:class:`gvae.rules.checks.Checks`), shared by the
operators' kernels, their fake (shape-only) implementations and :mod:`gvae.torch.distribution`, and the
broadcast of shapes they use."""
import torch

from ..rules.checks import Checks


def _broadcast_shapes(*shapes):
    """``torch.broadcast_shapes(*shapes)`` as a tuple; shapes of plain ints are broadcast here, where PyTorch's reference
    implementation (written for symbolic sizes) would cost more than a small band_head's whole call.
    Symbolic sizes (torch.compile's) go to it."""
    out = []
    for shape in shapes:
        for i, d in enumerate(reversed(shape)):
            if type(d) is not int:
                return tuple(torch.broadcast_shapes(*shapes))
            if i == len(out):
                out.append(d)
            elif d != out[i] and d != 1:
                if out[i] != 1:
                    raise RuntimeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
                out[i] = d
    return tuple(reversed(out))


CHECKS = Checks(torch.Tensor, (torch.float32, torch.float64), "torch.float32 or torch.float64",
                _broadcast_shapes, RuntimeError)
_dtype = CHECKS.dtypes

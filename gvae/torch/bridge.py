"""How tensors reach gvae's kernels and come back, no copy either way.

CPU tensors reach the Numba kernels as NumPy views of their own memory (``Tensor.numpy``) and the
kernels' outputs come back as tensors over the same memory (``torch.from_numpy``). A non-contiguous input
is copied once, by the kernel front ends, as for a strided NumPy array.

CUDA tensors reach gvae's CUDA kernels (the same front ends of :mod:`gvae.kernels.band`, which run them on
CuPy arrays) as CuPy views (a non-contiguous tensor is made contiguous first, the one copy the CPU path
makes too), and the results come back through DLPack. CuPy is imported when the first CUDA tensor
arrives (a ``RuntimeError`` names what to install where it is missing). The kernels are launched on
``torch.cuda.current_stream(device)``, in order with PyTorch's own work, and what CuPy allocates during
the call, the outputs included, comes from PyTorch's caching allocator on that stream. Tensors on
different devices are a ``ValueError`` naming each argument's device."""
import contextlib

import torch

from ..kernels.backend import CUDA_INSTALL
from ..kernels.cuda.stream import external_stream

def _np(t):
    """The NumPy view of a CPU tensor's memory (no copy; autograd is handled outside the kernel). detach()
    only where a gradient is tracked: it costs as much again as numpy() on a small tensor."""
    return t.detach().numpy() if t.requires_grad else t.numpy()


def _cupy():
    """CuPy, imported when the first CUDA tensor arrives (gvae.torch works on machines without it)."""
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(f"gvae.torch: CUDA tensors need CuPy, which could not be imported ({e}); install "
                           f"it with {CUDA_INSTALL}") from None
    return cupy


def _cuda_device(name, named):
    """The one CUDA device (a ``torch.device``) of the tensors among ``named``, (argname, value) pairs of a
    call of ``gvae::name``; a ValueError naming each tensor argument's device where they are not all on it."""
    devices = {v.device for _, v in named if isinstance(v, torch.Tensor)}
    if len(devices) == 1:
        device, = devices
        if device.type == "cuda":
            return device
    where = ", ".join(f"{a} on {v.device}" for a, v in named if isinstance(v, torch.Tensor))
    raise ValueError(f"{name}: the tensor arguments must be on one CUDA device, got {where}; move them to one "
                     "device first (gvae never copies between devices)")


def _allocator(cupy, device):
    """A CuPy allocator (nbytes -> ``cupy.cuda.MemoryPointer``) drawing from PyTorch's caching allocator:
    each block is an uint8 tensor on ``device`` (allocated on PyTorch's current stream), owned by the
    CuPy memory, so it goes back to PyTorch's cache, in that stream's order, when CuPy's last reference to
    it (an output handed to PyTorch through DLPack included) dies. Zero bytes give a null pointer, which
    CuPy accepts given the device."""
    def alloc(nbytes):
        owner = torch.empty(nbytes, dtype=torch.uint8, device=device)
        memory = cupy.cuda.UnownedMemory(owner.data_ptr(), nbytes, owner, device.index)
        return cupy.cuda.MemoryPointer(memory, 0)
    return alloc


@contextlib.contextmanager
def _on_stream(cupy, device, stream):
    """CuPy's current device, stream and allocator set to PyTorch's for the block: ``device`` (a CUDA
    ``torch.device``), ``stream`` (a ``torch.cuda.Stream`` of it, PyTorch's current one) and
    :func:`_allocator`. Launched on PyTorch's stream, the kernels follow the work that made their inputs
    and precede the work that reads their outputs, with no synchronisation."""
    with cupy.cuda.Device(device.index), external_stream(cupy, stream.cuda_stream, device.index), \
            cupy.cuda.using_allocator(_allocator(cupy, device)):
        yield


# The floating dtypes the kernels take, as CuPy names them (the tensors' other dtypes go through DLPack).
_CUPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _to_cupy(cupy, t):
    """The CuPy array over a CUDA tensor's memory, no copy (autograd is handled outside the kernel). A
    non-contiguous tensor is copied once here, as the kernel front ends would copy its strided CuPy view.
    A float tensor is wrapped by its pointer, owned by the CuPy memory: DLPack's hand-over costs several
    times as much on the host, and its stream handshake is not needed, as the kernels run on the stream
    PyTorch's current one (:func:`_on_stream`)."""
    t = t.detach().contiguous()
    dtype = _CUPY_DTYPES.get(t.dtype)
    if dtype is None or t.numel() == 0:
        return cupy.from_dlpack(t)
    memory = cupy.cuda.UnownedMemory(t.data_ptr(), t.numel() * t.element_size(), t, t.device.index)
    return cupy.ndarray(tuple(t.shape), dtype, cupy.cuda.MemoryPointer(memory, 0))


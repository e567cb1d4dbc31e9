"""A stretch of kernel work recorded once and replayed: the device-neutral face of gvae's captures.

:func:`capture` gives the capture of a device: the CPU's native program of the kernels handed to gvae's
threads (:mod:`gvae.kernels.cpu.capture`), CUDA's graph of a stream (:mod:`gvae.kernels.cuda.capture`),
or None for a device without one (its work runs as it is called). Every capture answers the same:

- ``key()``: what a record made now depends on besides its inputs' shapes (the CPU: gvae's thread count
  and the generation of the products' plans; CUDA: nothing), compared, never hashed.
- ``around()``: the context every call of the captured work runs in, recorded or not (CUDA: the graph's
  stream and memory pool, so that the pool holds each block a recording asks for; the CPU: nothing).
- ``record(fn, args, keep=())``: ``fn(*args)`` recorded, as ``(record, None)``, or ``(None, why)`` when the
  device refused it. ``keep``: arrays the work reads or writes that live on beyond it besides ``args`` and
  its outputs (the parameters, the gradients); the CPU may move the work's other arrays (it packs them by
  their lifetimes, :mod:`gvae.kernels.cpu.buffer_plan`). The record's ``outputs`` are what ``fn``
  returned: the arrays each run of the record writes (on the CPU already computed by the recording; on
  CUDA not before the first run).
- ``synchronous``: whether ``record.run()`` returns only once its work is done (the CPU), so that a wall
  clock around it times the work; CUDA's launch returns at once.
- ``record.run()``: the recorded work again, on whatever its arrays now hold; returns whether each
  decision the work took from its data came out as when it was recorded (else its outputs are not what
  ``fn`` would have computed).

A record sees only the device's kernels: work beside them (NumPy between the kernels on the CPU) is not
replayed, so whoever runs a record checks it against ``fn`` itself, bit for bit, before trusting it.
"""
from .backend import device_of


def has_capture(device):
    """Whether the device called ``device`` has a capture (whose records keep a step's arrays again)."""
    return device in ("cpu", "cuda")


def capture(array):
    """A new capture of the device ``array`` lives on, or None for a device without one."""
    device = device_of(array)
    if device == "cpu":
        from .cpu.capture import CpuCapture
        return CpuCapture()
    if device == "cuda":
        from .cuda.capture import CudaCapture
        return CudaCapture()
    return None

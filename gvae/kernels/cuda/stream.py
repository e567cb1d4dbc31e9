"""CuPy's handle on a CUDA stream that another library made (PyTorch's current stream, XLA's): the one
place that knows CuPy's two spellings of it."""


class _StreamHandle:
    """A stream as the CUDA stream protocol gives it: ``__cuda_stream__()`` -> (version 0, the handle)."""

    def __init__(self, ptr):
        self.ptr = int(ptr)

    def __cuda_stream__(self):
        return 0, self.ptr


def external_stream(cupy, ptr, device_id):
    """A CuPy stream (a context manager that makes it current) over the cudaStream_t ``ptr`` (an int) of
    GPU ``device_id``: ``cupy.cuda.Stream.from_external`` where CuPy has it (14 on, which deprecates the
    other), else ``cupy.cuda.ExternalStream``. The caller keeps the stream alive while it is used."""
    from_external = getattr(getattr(cupy.cuda, "Stream", None), "from_external", None)
    if from_external is None:
        return cupy.cuda.ExternalStream(ptr, device_id)
    with cupy.cuda.Device(device_id):
        return from_external(_StreamHandle(ptr))

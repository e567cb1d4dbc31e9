"""CUDA's capture (:mod:`gvae.kernels.capture`): a stretch of kernel launches recorded with CuPy's stream
capture as a CUDA graph, replayed by one launch.

The graph's arrays come from a memory pool of its own (PyTorch's private pools are the model), so no
array made outside the captured work is handed a block the graph writes; the work runs on a stream of its
own, made to wait for the default stream's work each time :meth:`CudaCapture.around` is entered. A
recording allocates only blocks the pool already holds (CUDA refuses an allocation during a capture), so
the same work must have run once inside ``around()`` before it is recorded. Work that reads the device
(a synchronisation) is refused by the capture; the refusal names where in gvae it arose.
"""
import contextlib
import importlib
import os
import traceback

_GVAE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CudaCapture:
    """Records and replays kernel work on the current GPU (the face: :mod:`gvae.kernels.capture`)."""

    synchronous = False  # a graph's launch returns before its work is done

    def __init__(self):
        self.cupy = cupy = importlib.import_module("cupy")
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()

    def key(self):
        return ()

    @contextlib.contextmanager
    def around(self):
        """The graph's stream, after the default stream's work so far, and its memory pool."""
        cupy = self.cupy
        self.stream.wait_event(cupy.cuda.Stream.null.record())
        with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
            yield

    def record(self, fn, args, keep=()):
        """``fn(*args)`` captured, not run (inside :meth:`around`); (record, None), or (None, why). ``keep``
        is the face's (nothing to do with it: the graph's pool hands freed blocks on as the calls did)."""
        try:
            self.stream.begin_capture()
            try:
                outputs = fn(*args)
            finally:
                graph = self.stream.end_capture()
        except Exception as exc:  # noqa: BLE001 - whatever the capture refused, the work runs uncaptured
            return None, f"{type(exc).__name__}{refused_where(exc)}: {exc}"
        return CudaRecord(graph, self.stream, outputs), None


class CudaRecord:
    """A CUDA graph and the arrays its launches write (``outputs``)."""

    def __init__(self, graph, stream, outputs):
        self.graph, self.stream, self.outputs = graph, stream, outputs

    def run(self):
        """One launch on the capture's stream (no decision of the work depends on its data: True)."""
        self.graph.launch(self.stream)
        return True


def refused_where(exc):
    """Where in gvae ``exc`` arose, as ' in NAME (gvae/FILE.py:LINE)': the innermost frame of gvae's own
    code it passed through (the operation a capture refused), or '' when it passed through none."""
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename).startswith(_GVAE + os.sep)]
    if not ours:
        return ""
    frame = ours[-1]
    return f" in {frame.name} (gvae/{os.path.relpath(frame.filename, _GVAE)}:{frame.lineno})"

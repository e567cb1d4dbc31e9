"""The training step on a CUDA GPU as a CUDA graph: recorded once, replayed for each batch.

A step on a GPU is about a hundred kernel launches, and the Python above each launch (~30 us) costs
more than the GPU's work at batch 100 (docs/gpu.md). So the Trainer records the step's device work once
with CuPy's stream capture and then replays it: the batch copied into the recorded inputs, the step's
Adam constants copied from pinned host memory into the device array the graph reads, one launch, and one
read of the loss, the reported means and the squared gradient norm together.

Recorded: the noise (from the epoch's CuPy generator, whose state lives on the GPU, so that each replay
draws afresh), value_and_grad, the squared norm, and Adam with its constants and guard on the device
(:func:`gvae.kernels.adam_update_guarded`: the clip scale from the norm, nothing written for a non-finite
loss or norm, the step the trainer then counts as skipped), the Polyak average's step in the same pass. The eager step and the replay launch the same
kernels in the same order (gvae's own cuBLAS handle in both), so their bits agree and a resumed run goes
on exactly (tools/gpu_probe.py graph checks it on a GPU).

The graph's arrays come from a memory pool of its own (PyTorch's private pools are the model), so no
array made outside a replay is handed a block the graph writes; its work runs on a stream of its own,
made to wait for the default stream's work before each step. A recording belongs to one (batch shapes,
KL weight, generator): the first step of a new one runs eagerly in the graph's pool (so that the pool
holds every block the recording asks for), the next is recorded and replayed. A KL weight that changes
every step (a warm-up) therefore runs eagerly until it settles, and a new epoch (a new generator) is
recorded again. A step the capture refuses (a task that reads the device inside its step) runs eagerly,
and so does every later one, with one warning.
"""
import os
import traceback
import warnings

import numpy as np

from .. import kernels


def refused_where(exc):
    """Where in gvae ``exc`` arose, as ' in NAME (gvae/FILE.py:LINE)': the innermost frame of gvae's own
    code it passed through (the operation a capture refused), or '' when it passed through none."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename).startswith(root + os.sep)]
    if not ours:
        return ""
    frame = ours[-1]
    return f" in {frame.name} (gvae/{os.path.relpath(frame.filename, root)}:{frame.lineno})"


class GraphStep:
    """The recorded step of one :class:`Trainer` on CUDA (see the module's docstring)."""

    def __init__(self, trainer):
        import cupy
        import cupyx
        self.cupy, self.trainer = cupy, trainer
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()
        self.hyper_host = cupyx.empty_pinned(3, dtype=np.float64)
        self.refused = None  # why a capture failed: then every step runs eagerly
        self.warmed = None   # the key whose eager step filled the pool
        self.recorded = None  # (key, graph, inputs, results) of the recording
        with self.stream:
            self.hyper = cupy.zeros(3, dtype=np.float64)

    def key(self, batch, kl_weight, rng):
        """What a recording belongs to: the batch's shapes and dtypes, the KL weight, the generator."""
        return tuple((a.shape, a.dtype.str) for a in batch), kl_weight, rng

    def _same(self, key, other):
        return other is not None and key[:2] == other[:2] and key[2] is other[2]

    def replayable(self, key):
        """Whether a step of ``key`` replays (recording it first if its pool is warm)."""
        return self.refused is None and (self._same(key, self.warmed) or
                                         (self.recorded is not None and self._same(key, self.recorded[0])))

    def eager(self):
        """Context for an eager step that warms the pool for the next recording: the graph's stream and
        pool, after the default stream's work."""
        cupy = self.cupy
        self.stream.wait_event(cupy.cuda.Stream.null.record())
        return _Both(self.stream, cupy.cuda.using_allocator(self.pool.malloc))

    def warm(self, key):
        self.warmed = key

    def _record(self, key, kl_weight):
        cupy, tr = self.cupy, self.trainer
        batch_shapes = key[0]
        inputs = tuple(cupy.empty(shape, dtype=np.dtype(dtype)) for shape, dtype in batch_shapes)
        opt = tr.state.optimizer
        params = tr.state.params.views

        def work():
            args = tr.task.step_args(inputs, key[2], kl_weight)
            (loss, aux), _ = tr.step_fn(params, tr.model, *args)
            norm2 = kernels.sum_squares_array(tr.grad_flat)
            kernels.adam_update_guarded(opt.flat, tr.grad_flat, opt.m, opt.v, hyper=self.hyper, norm2=norm2,
                                        loss=loss.reshape(1), beta1=opt.beta1, beta2=opt.beta2,
                                        **tr.state.average_args())
            return cupy.concatenate([cupy.stack([loss, *aux]).astype(np.float64), norm2])

        self.stream.begin_capture()
        try:
            results = work()
        finally:
            graph = self.stream.end_capture()
        self.recorded = (key, graph, inputs, results)
        self.warmed = None

    def replay(self, batch, kl_weight, key):
        """One step from the recording of ``key`` (recorded now if it is new): Adam applied on the device
        unless the loss or norm is not finite. Returns (loss, reported means, squared norm) as host
        floats, or None if the capture was refused (the step has not run: run it eagerly)."""
        cupy, opt = self.cupy, self.trainer.state.optimizer
        self.hyper_host[:] = kernels.adam_constants(opt.lr, opt.beta1, opt.beta2, opt.eps, opt.step + 1, opt.clip_norm)
        with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
            self.stream.wait_event(cupy.cuda.Stream.null.record())
            if self.recorded is None or not self._same(key, self.recorded[0]):
                try:
                    self._record(key, kl_weight)
                except Exception as exc:  # noqa: BLE001 - any refusal means: this run steps eagerly
                    self.refused = f"{type(exc).__name__}{refused_where(exc)}: {exc}"
                    self.recorded = self.warmed = None
                    warnings.warn(f"the training step could not be recorded as a CUDA graph ({self.refused}); "
                                  "it runs eagerly (the same results, more host time a step)", stacklevel=3)
                    return None
            _, graph, inputs, results = self.recorded
            for dst, src in zip(inputs, batch):
                dst[...] = src
            self.hyper.set(self.hyper_host, stream=self.stream)  # CuPy refuses a copy from the host in a capture
            graph.launch(self.stream)
            values = cupy.asnumpy(results, stream=self.stream)
        self.stream.synchronize()
        loss, *reported, norm2 = values.tolist()
        return loss, reported, norm2


class _Both:
    """Two context managers entered in order and left in reverse."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __enter__(self):
        self.first.__enter__()
        self.second.__enter__()

    def __exit__(self, *exc):
        try:
            self.second.__exit__(*exc)
        finally:
            self.first.__exit__(*exc)

"""The training step's forward and backward on the CPU, recorded once and replayed natively for each batch.

A CPU step is a few dozen kernel calls, and the tape's Python between them (the primitives, their VJPs,
each kernel's checks and dispatch) takes an eighth to a quarter of the step at batch 100
(docs/performance.md). So the Trainer records the kernels that one step's ``value_and_grad`` hands to
gvae's threads (:mod:`gvae.kernels.cpu.programs`) and runs later steps as that record: the batch and the
noise copied into the recorded inputs, one native call, and the loss, the reported means and the gradient
(in the trainer's flat buffer) read where the recorded step left them.

A record belongs to one *key*: the step inputs' shapes and dtypes, every other step argument (the KL
weight, the objective's settings), gvae's thread count, the products' tuning generation, and the
parameter and gradient buffers. The first step of a key runs on the tape (compiling, deciding the
products' plans); the second is recorded as it runs (and then run on the tape again, outside the
recording, for its own result); the third is replayed and then run on the tape from the same inputs, and
the record is trusted only if the two agree bit for bit (this catches work that the recording could not
see: NumPy between the kernels, a draw made inside the loss). A record that disagrees, or a step whose
recording was refused (a task without a native form, or work declared outside the tasks), leaves its key
on the tape for the rest of the run. A replay whose data would have made the tape take another decision
(:meth:`Program.holds`: a product of a mostly-zero factor computed sparse or dense) is followed by the
tape on the same inputs. The replay runs the same kernels on the same arrays in the same order as the
tape, so its results are the tape's bit for bit, and a resumed run goes on exactly.
"""
import numpy as np

from ..autodiff import value_and_grad
from ..kernels.cpu import programs, threads, tuning


def _leaves(args, arrays, others):
    """Split the step arguments ``args`` (nested tuples, lists and dicts) into their NumPy arrays and
    everything else (a dict's keys among the latter), in a fixed order."""
    for a in args:
        if isinstance(a, np.ndarray):
            arrays.append(a)
        elif isinstance(a, (tuple, list)):
            _leaves(a, arrays, others)
        elif isinstance(a, dict):
            others.append(tuple(a))
            _leaves(a.values(), arrays, others)
        else:
            others.append(a)
    return arrays, others


class _Record:
    __slots__ = ("key", "program", "args", "inputs", "loss", "aux", "trusted")

    def __init__(self, key, program, args, inputs, loss, aux):
        self.key, self.program, self.args, self.inputs = key, program, args, inputs
        self.loss, self.aux, self.trusted = loss, aux, False


class NativeStep:
    """The recorded step of one CPU :class:`Trainer` (see the module's docstring)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.grads = trainer.state.params.unflatten(trainer.grad_flat)
        loss = trainer.task.loss

        def with_loss(*args):  # the loss array itself among the results (value_and_grad gives a scalar)
            value, aux = loss(*args)
            return value, (value, aux)
        self.step_fn = value_and_grad(with_loss, has_aux=True, out=self.grads)
        self.seen = None      # the key of the last step run on the tape
        self.record = None
        self.refused = []     # (key, why it stays on the tape); keys are compared, never hashed
        self.replays = 0      # steps replayed (and trusted) so far

    def key(self, args):
        tr = self.trainer
        arrays, others = _leaves(args, [], [])
        return (tuple((a.shape, a.dtype.str) for a in arrays), tuple(others), threads.get_threads(),
                tuning.generation(), id(tr.state.params.flat), id(tr.grad_flat))

    def _tape(self, args):
        (_, (loss, aux)), _ = self.step_fn(self.trainer.state.params.views, self.trainer.model, *args)
        return loss, aux

    def value_and_grad(self, batch, rng, kl_weight):
        """The loss (a 0-d array) and the task's reported means (0-d arrays) of one step on ``batch``, its
        gradient written into the trainer's flat buffer: replayed where a trusted record exists, else on
        the tape (recording or checking a record on the way)."""
        tr = self.trainer
        args = tr.task.step_args(batch, rng, kl_weight)
        key = self.key(args)
        record = self.record
        if record is not None and record.key == key:
            for dst, src in zip(record.inputs, _leaves(args, [], [])[0]):
                np.copyto(dst, src)
            record.program.run()
            if not record.program.holds():
                return self._tape(record.args)
            if record.trusted:
                self.replays += 1
                return record.loss, record.aux
            replayed = [np.array(a) for a in (record.loss, *record.aux)], tr.grad_flat.copy()
            loss, aux = self._tape(record.args)
            same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(replayed[0], (loss, *aux)))
            if same and np.array_equal(replayed[1], tr.grad_flat, equal_nan=True):
                record.trusted = True
            else:
                self.refused.append((key, "a replay differed from the tape"))
                self.record = None
            return loss, aux
        if self.seen != key or any(key == k for k, _ in self.refused):
            self.seen = key
            return self._tape(args)
        own = _copied(args)
        with programs.recording() as program:
            loss, aux = self._tape(own)
        if program.refused is not None:
            self.refused.append((key, program.refused))
        else:
            self.record = _Record(key, program, own, _leaves(own, [], [])[0], loss, aux)
        # The step itself is the tape's outside a recording: a kernel taken only while recording (a view
        # copied for the next kernel, say) must not make this step differ from an unrecorded run's.
        return self._tape(args)


def _copied(args):
    """``args`` with each NumPy array replaced by a copy of its own (the recorded inputs, which later
    steps' data are copied into)."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append(np.array(a, copy=True))
        elif isinstance(a, (tuple, list)):
            out.append(type(a)(_copied(a)))
        elif isinstance(a, dict):
            out.append(dict(zip(a, _copied(a.values()))))
        else:
            out.append(a)
    return tuple(out)

"""The training step's forward and backward, captured once and replayed for each batch, on any device.

A step is tens to a hundred kernel calls, and the Python between them (the tape's primitives, their
VJPs, each kernel's checks and dispatch, a GPU's launches) costs a large part of the step at batch 100
(docs/performance.md, docs/howto/gpu.md). So :class:`CapturedStep` records the kernels of one step's
``value_and_grad`` with the device's capture (:func:`gvae.kernels.capture`: the CPU's native program,
CUDA's graph) and runs later steps as that record: the step inputs (the batch, the noise the task drew for
it, every array :meth:`Task.step_args` gives) copied into the recorded inputs, one run, and the loss, the
reported means and the gradient (in the trainer's flat buffer) read where the record left them. Adam is
outside the record on every device: the trainer applies it after the step, so a record is checked
against the tape by its outputs alone, and a skipped step needs no guard inside it.

A record belongs to one *key*: the step inputs' shapes and dtypes, every other step argument (the KL
weight, the objective's settings), what the capture adds (the CPU: gvae's thread count and the products'
tuning generation), and the parameter and gradient buffers. The first step of a key runs on the tape
(compiling, deciding the products' plans, filling a GPU graph's memory pool); the second is recorded,
then run on the tape outside the recording for its own result; the third is replayed and then run on the
tape from the same inputs, and the record is trusted only if the two agree bit for bit (this catches work
that the recording could not see: NumPy between the kernels, a draw made inside the loss). A record that
disagrees, or a step whose recording was refused (a task without a native form, work declared outside
the tasks, a read of the GPU inside the step), leaves its key on the tape for the rest of the run
(:attr:`CapturedStep.refused` says why: a last, shorter batch of an epoch is often refused, and costs
nothing but its own Python). A replay whose data would have made the tape take another
decision (a product of a mostly-zero factor computed sparse or dense) stops at that decision's check; the
key's other records are tried in turn, and where none holds, the step is recorded once more (that way of
the decisions is a record of its own, up to :data:`MAX_RECORDS` a key) and taped. Data near a decision's
threshold (view 1 of noisy MNIST, 20% nonzero after its dropout, about the sparse products' limit) so
replay either way instead of paying a replay and the tape. The replay runs the same kernels on the same
arrays in the same order as the tape, so its results are the tape's bit for bit, and a resumed run goes
on exactly.

A replay is not always the faster way: a record keeps the step's arrays alive between its runs, where the
tape's freed arrays hand their memory (still in cache) to the next ones. The CPU's records pack their
arrays by lifetime (:mod:`gvae.kernels.cpu.buffer_plan`, given the parameter and gradient buffers as
``keep``), and replayed faster than the tape at the sizes measured (docs/performance.md), but a record
the packing left as it was, or another machine's caches, may not. So on a device whose runs the wall clock
can time (the capture's ``synchronous``: the CPU), a key's first steps after its record is trusted
are a trial (:class:`_Trial`): taped and replayed steps alternate until each way has :data:`TRIAL_STEPS`
steps timed (a step that records or checks a record is not counted), and the faster way by median goes on;
where that is the tape, the key's records are dropped (their memory freed) and :attr:`refused` says so.
Both ways give the same bits, so the choice changes a run's speed and nothing else.

Each step reads the device twice, replayed or taped: the squared gradient norm (a host float from
``kernels.sum_squares``: skip the step? clip it?), then one small vector of the loss and the reported
means.
"""
import contextlib
import statistics
import time

from .. import kernels
from ..autodiff import value_and_grad
from ..kernels import array_module, to_host


class _Record:
    __slots__ = ("key", "record", "args", "inputs", "trusted")

    def __init__(self, key, record, args, inputs):
        self.key, self.record, self.args, self.inputs, self.trusted = key, record, args, inputs, False


# The records a key keeps, one per way the data-dependent decisions of its products came out (sparse or
# dense): each holds a step's activations (training's memory check counts them; the inputs are shared).
# A batch that takes a way none of them took, past these, runs on the tape.
MAX_RECORDS = 2

# The steps each way of a key's trial is timed on, replayed and taped (see the module's docstring).
TRIAL_STEPS = 8

_clock = time.perf_counter  # (the trial's clock: tests give it one of their own)


class _Trial:
    """The timing of a key's steps, taped and replayed in turn, each way's times kept until both have
    ``steps``; then :meth:`tape_is_faster` by median."""

    def __init__(self, steps):
        self.steps = steps
        self.times = {"taped": [], "replayed": []}
        self.turn = "taped"

    def add(self, way, seconds):
        """One more step of ``way`` timed; the other way's turn next."""
        self.times[way].append(seconds)
        self.turn = "replayed" if way == "taped" else "taped"

    def done(self):
        return all(len(times) >= self.steps for times in self.times.values())

    def tape_is_faster(self):
        return statistics.median(self.times["taped"]) < statistics.median(self.times["replayed"])

    def summary(self):
        return (f"the tape was faster: {1e3 * statistics.median(self.times['taped']):.1f} ms a step against "
                f"{1e3 * statistics.median(self.times['replayed']):.1f} replayed (medians of {self.steps} steps each)")


class CapturedStep:
    """The captured step of one :class:`Trainer` (see the module's docstring); ``capture`` None: every
    step on the tape."""

    def __init__(self, trainer, capture):
        self.trainer, self.capture = trainer, capture
        self.xp = array_module(trainer.grad_flat)
        self.grads = trainer.state.params.unflatten(trainer.grad_flat)
        loss = trainer.task.loss

        def with_loss(*args):  # the loss array itself among the results (value_and_grad gives a scalar)
            value, aux = loss(*args)
            return value, (value, aux)
        self.step_fn = value_and_grad(with_loss, has_aux=True, out=self.grads)
        self.seen = None      # the key of the last step run on the tape
        self.records = []     # the records of one key, the one replayed last first
        self.refused = []     # (key, why it stays on the tape); keys are compared, never hashed
        self.replays = 0      # steps replayed (and trusted) so far
        # The steps each way of a key's trial takes (0: no trial, every trusted record replays).
        self.trial_steps = TRIAL_STEPS if capture is not None and capture.synchronous else 0
        self.trial = None     # the trial of the records' key while it runs

    def __call__(self, batch, rng, kl_weight):
        """One step's loss, reported means (a list) and squared gradient norm, as host floats; the gradient
        in the trainer's flat buffer."""
        with contextlib.nullcontext() if self.capture is None else self.capture.around():
            loss, aux = self._value_and_grad(self.trainer.task.step_args(batch, rng, kl_weight))
            norm2 = kernels.sum_squares(self.trainer.grad_flat)
            loss, *reported = to_host(self.xp.stack([loss, *aux])).tolist()
        return loss, reported, norm2

    def _key(self, arrays, others):
        """The key of a step whose arguments split into ``arrays`` and ``others`` (:meth:`_leaves`)."""
        tr = self.trainer
        return (tuple((a.shape, a.dtype.str) for a in arrays), tuple(others), self.capture.key(),
                id(tr.state.params.flat), id(tr.grad_flat))

    def _tape(self, args):
        (_, (loss, aux)), _ = self.step_fn(self.trainer.state.params.views, self.trainer.model, *args)
        return loss, aux

    def _value_and_grad(self, args):
        """The loss and the reported means (0-d arrays) of the step on ``args``: replayed where a trusted
        record of its key holds for them, else on the tape (recording or checking a record on the way)."""
        if self.capture is None:
            return self._tape(args)
        arrays, others = self._leaves(args, [], [])  # once a step: the key, and the data copied in
        key = self._key(arrays, others)
        refused = any(key == k for k, _ in self.refused)
        if self.records and self.records[0].key == key:
            trial = self.trial
            if trial is not None and trial.turn == "taped" and self.records[0].trusted:
                start = _clock()
                out = self._tape(args)
                return self._timed(trial, "taped", start, out)
            start, replays = _clock(), self.replays
            replayed = self._replay(arrays)
            if replayed is not None:
                # (only a trusted record's replay counts: one checked against the tape ran the tape too)
                return replayed if trial is None or self.replays == replays else \
                    self._timed(trial, "replayed", start, replayed)
            if refused or len(self.records) >= MAX_RECORDS:
                return self._tape(args)
            return self._record(key, args, arrays)  # the decisions came out another way: a record of its own
        if self.seen != key or refused:
            self.seen = key
            return self._tape(args)
        self.records = []
        self.trial = _Trial(self.trial_steps) if self.trial_steps else None
        return self._record(key, args, arrays)

    def _timed(self, trial, way, start, out):
        """``out``, the step's (loss, means) taken ``way`` since ``start``, after adding its time to the
        key's trial; the trial decided once both ways have their steps (the tape: the records dropped)."""
        trial.add(way, _clock() - start)
        if trial.done():
            self.trial = None
            if trial.tape_is_faster():
                self.refused.append((self.records[0].key, trial.summary()))
                self.records = []
        return out

    def _record(self, key, args, arrays):
        """Record the step on a copy of ``args`` (its device arrays ``arrays``) as one more record of ``key``
        (or say why not), then run it on the tape. A key's records share their inputs (the first record's
        copies): a step's data are copied in once, whichever record then runs."""
        if self.records:
            own = self.records[0].args
            self._copy_in(arrays)
        else:
            own = self._copied(args)
        made, why = self.capture.record(self._tape, (own,), keep=(self.trainer.state.params.flat,
                                                                  self.trainer.grad_flat))
        if made is None:
            self.refused.append((key, why))
        else:
            self.records.append(_Record(key, made, own, self._leaves(own, [], [])[0]))
        # The step itself is the tape's outside a recording: a kernel taken only while recording (a view
        # copied for the next kernel, say) must not make this step differ from an unrecorded run's.
        return self._tape(args)

    def _replay(self, arrays):
        """The step from the first record whose decisions hold for the step's device arrays ``arrays``
        (brought to the front), checked against the tape if it is not trusted yet; None where none holds."""
        self._copy_in(arrays)
        for i, record in enumerate(self.records):
            if record.record.run():
                self.records.insert(0, self.records.pop(i))
                return self._outputs(record)
        return None

    def _copy_in(self, arrays):
        """The step's device arrays copied into the inputs the key's records share."""
        for dst, src in zip(self.records[0].inputs, arrays):
            dst[...] = src

    def _outputs(self, record):
        """The loss and means a holding run of ``record`` left; the tape's, after comparing them, the first
        time (a record that differs is dropped with the key's others, and the key stays on the tape)."""
        loss, aux = record.record.outputs
        if record.trusted:
            self.replays += 1
            return loss, aux
        replayed = [a.copy() for a in (loss, *aux)], self.trainer.grad_flat.copy()
        loss, aux = self._tape(record.args)
        xp = self.xp
        if all(bool(xp.array_equal(a, b, equal_nan=True)) for a, b in zip(replayed[0], (loss, *aux))) and \
                bool(xp.array_equal(replayed[1], self.trainer.grad_flat, equal_nan=True)):
            record.trusted = True
        else:
            self.refused.append((record.key, "a replay differed from the tape"))
            self.records, self.trial = [], None
        return loss, aux

    def _leaves(self, args, arrays, others):
        """Split the step arguments ``args`` (nested tuples, lists and dicts) into their device arrays and
        everything else (a dict's keys among the latter), in a fixed order."""
        for a in args:
            if isinstance(a, self.xp.ndarray):
                arrays.append(a)
            elif isinstance(a, (tuple, list)):
                self._leaves(a, arrays, others)
            elif isinstance(a, dict):
                others.append(tuple(a))
                self._leaves(a.values(), arrays, others)
            else:
                others.append(a)
        return arrays, others

    def _copied(self, args):
        """``args`` with each device array replaced by a copy of its own (the recorded inputs, which later
        steps' data are copied into)."""
        out = []
        for a in args:
            if isinstance(a, self.xp.ndarray):
                out.append(self.xp.array(a, copy=True))
            elif isinstance(a, (tuple, list)):
                out.append(type(a)(self._copied(a)))
            elif isinstance(a, dict):
                out.append(dict(zip(a, self._copied(a.values()))))
            else:
                out.append(a)
        return tuple(out)

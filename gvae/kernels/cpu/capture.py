"""The CPU's capture (:mod:`gvae.kernels.capture`): the native tasks that a stretch of kernel calls hands
to gvae's threads, recorded as a :class:`programs.Program` and run again by one native call."""
import contextlib

import numpy as np

from . import buffer_plan, programs, threads, tuning


class CpuCapture:
    """Records and replays kernel work on the CPU (the face: :mod:`gvae.kernels.capture`)."""

    synchronous = True  # a run returns when its tasks are done

    def key(self):
        """gvae's thread count and the products' tuning generation: a program runs on the threads it was
        recorded for, and with the plans the products then followed."""
        return threads.get_threads(), tuning.generation()

    def around(self):
        return contextlib.nullcontext()

    def record(self, fn, args, keep=()):
        """``fn(*args)`` run once as it is recorded; (record, None), or (None, why the program refused).
        The program's other arrays than those of ``args``, of its outputs and of ``keep`` (arrays that live
        on beyond it: the parameters it reads, the gradients it writes) are then packed by their lifetimes
        (:func:`buffer_plan.pack`); the record's ``packed`` says how, (arena bytes, bytes moved), or None."""
        with programs.recording() as program:
            outputs = fn(*args)
        if program.refused is not None:
            return None, program.refused
        record = CpuRecord(program, outputs)
        results = [*_arrays(outputs), *keep]
        record.packed = buffer_plan.pack(program, [*_arrays(args), *results], results)
        return record, None


def _arrays(x):
    """The arrays in ``x``, an array or nested tuples, lists and dicts of them and of other values."""
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (tuple, list)):
        return [a for item in x for a in _arrays(item)]
    return []


class CpuRecord:
    """A recorded program and the arrays its runs write (``outputs``)."""

    def __init__(self, program, outputs):
        self.program, self.outputs, self.packed = program, outputs, None

    def __len__(self):
        """How many native tasks one run performs."""
        return len(self.program)

    def run(self):
        """One native run; whether each decision taken from the data held (:meth:`Program.holds`)."""
        self.program.run()
        return bool(self.program.holds())

"""The CPU's capture (:mod:`gvae.kernels.capture`): the native tasks that a stretch of kernel calls hands
to gvae's threads, recorded as a :class:`programs.Program` and run again by one native call."""
import contextlib

from . import programs, threads, tuning


class CpuCapture:
    """Records and replays kernel work on the CPU (the face: :mod:`gvae.kernels.capture`)."""

    synchronous = True  # a run returns when its tasks are done

    def key(self):
        """gvae's thread count and the products' tuning generation: a program runs on the threads it was
        recorded for, and with the plans the products then followed."""
        return threads.get_threads(), tuning.generation()

    def around(self):
        return contextlib.nullcontext()

    def record(self, fn, args):
        """``fn(*args)`` run once as it is recorded; (record, None), or (None, why the program refused)."""
        with programs.recording() as program:
            outputs = fn(*args)
        if program.refused is not None:
            return None, program.refused
        return CpuRecord(program, outputs), None


class CpuRecord:
    """A recorded program and the arrays its runs write (``outputs``)."""

    def __init__(self, program, outputs):
        self.program, self.outputs = program, outputs

    def __len__(self):
        """How many native tasks one run performs."""
        return len(self.program)

    def run(self):
        """One native run; whether each decision taken from the data held (:meth:`Program.holds`)."""
        self.program.run()
        return bool(self.program.holds())

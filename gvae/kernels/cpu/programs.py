"""A recorded program: the native tasks that a stretch of kernel calls handed to gvae's threads, in order,
run again later by one native call, with no Python between the tasks.

While :func:`recording` is open in a thread, every call that thread makes through :func:`threads.run` or
:func:`threads.run_here` is written down as it runs: each task's native form (a product's ``cblas_?gemm``
arguments, a C entry's address and arguments: :mod:`worker_loop`), the thread that ran it (0: the caller,
k: the k-th worker), and which tasks ran side by side (a *group*). A task without a native form, or one
whose arguments are not valid beyond its own call (:class:`entries.Call` ``replayable``: scratch sized by
the data it was made for), refuses the recording (:attr:`Program.refused` says why), as does work that a
kernel's front declares it did outside its tasks (:func:`unrecorded`). Other work that does not pass
through those calls (NumPy between the kernels, a kernel called straight from Python) is not seen:
whoever replays a program must check that nothing of the kind took part (the training step compares a
replay with the taped step bit for bit before it trusts one). A decision the calls took from their data
(a product of a mostly-zero factor computed sparse) is checked natively in the replay (:func:`check`).

:meth:`Program.run` replays: the caller's tasks run in a native loop (:func:`_replay`), which posts each
group's other tasks to the workers' boards and waits for them there, as :func:`threads.run` does from
Python. The tasks' arrays are kept by the program, so every address written down stays valid; the same
kernels run on the same addresses in the same order and on the same threads, so the results are those of
the calls recorded, bit for bit, for whatever the arrays now hold.
"""
import contextlib

import numpy as np

from . import blas, threads
from .entries import array_at
from .jit import jit
from .state import RUNTIME
from .worker_loop import ARGS, DONE, HOLD, KIND, POSTED, SIZE, load_acquire, pause, perform, store_release

__all__ = ["Program", "recording", "recording_open", "check", "unrecorded"]

# A program's table: a row per task, its thread, whether it closes its group, its kind, then the board's
# argument slots.
THREAD, LAST, TASK_KIND, ROW_ARGS = 0, 1, 2, 3
WIDTH = ROW_ARGS + HOLD - ARGS


class Program:
    """The tasks recorded by one :func:`recording` (see the module's docstring)."""

    def __init__(self):
        self.threads = threads.get_threads()  # the count the program was recorded for
        self.refused = None  # why it cannot be replayed (the first reason), or None
        self._rows = []      # (thread, kind, int64 arguments)
        self._ends = []      # the row after each group's last
        self._kept = []      # every task recorded: the arrays whose addresses the rows hold
        self._table = None
        self.flags = np.zeros(1)  # set by the checks of the decisions taken from the data (see holds)

    def __len__(self):
        return len(self._rows)

    @property
    def groups(self):
        """How many times the recorded calls handed tasks over (groups of tasks run side by side)."""
        return len(self._ends)

    def holds(self):
        """Whether every decision that the recorded calls took from their data (:func:`check`) came out the
        same in the last replay (each checked on the data the replay had computed up to it). Where one
        differs, the calls would have run other kernels, and the replay's results are not theirs."""
        return self.flags[0] == 0

    def refuse(self, why):
        """Mark the program as not replayable, for the reason ``why`` (the first one given is kept)."""
        if self.refused is None:
            self.refused = why
        self._rows, self._ends, self._kept, self._table = [], [], [], None

    def add(self, tasks, placed):
        """Write down ``tasks``, run side by side, task i on thread ``placed[i]`` (0: the caller)."""
        if self.refused is not None:
            return
        rows = []
        for task in tasks:
            native = getattr(task, "native", None)
            if native is None:
                self.refuse(f"a task without a native form ({type(task).__name__}) ran while recording")
                return
            if not getattr(task, "replayable", True):
                self.refuse(f"a task valid only for its own call ({task!r}) ran while recording")
                return
            if len(native[1]) > WIDTH - ROW_ARGS:
                self.refuse(f"a task of {len(native[1])} arguments ran while recording")
                return
            rows.append(native)
        self._rows += [(thread, kind, arguments) for thread, (kind, arguments) in zip(placed, rows)]
        self._ends.append(len(self._rows))
        self._kept.append(tuple(tasks))
        self._table = None

    def retarget(self, groups):
        """Run ``groups`` instead of the recorded tasks: as many groups of as many tasks, task i of group g
        on the thread that ran the recorded one (:mod:`buffer_plan`'s tasks on moved arrays). Returns the
        tasks replaced, in the same form, to give back to this method."""
        placed = [thread for thread, _, _ in self._rows]
        old, self._rows, self._ends, self._kept, self._table = self._kept, [], [], [], None
        at = 0
        for group in groups:
            self.add(list(group), placed[at:at + len(group)])
            at += len(group)
        return old

    def table(self):
        """The int64 table that :func:`_replay` runs: a row per task (see THREAD, LAST, TASK_KIND, ROW_ARGS)."""
        if self._table is None:
            table = np.zeros((len(self._rows), WIDTH), np.int64)
            for i, (thread, kind, arguments) in enumerate(self._rows):
                table[i, THREAD], table[i, TASK_KIND] = thread, kind
                table[i, ROW_ARGS:ROW_ARGS + len(arguments)] = arguments
            table[[end - 1 for end in self._ends], LAST] = 1
            self._table = table
        return self._table

    def run(self):
        """Run the recorded tasks again, in one native call (the caller's tasks here, the others on the
        workers that ran them), the BLAS held to one thread as gvae's products are. A check that finds a
        decision changed (:func:`check`) ends the run after its group: the rest would compute what the
        calls would not have (:meth:`holds` says so)."""
        if self.refused is not None:
            raise ValueError(f"this program cannot be replayed: {self.refused}")
        if threads.get_threads() != self.threads:
            raise ValueError(f"this program was recorded for {self.threads} thread(s) and cannot run on "
                             f"{threads.get_threads()}; record it again")
        table = self.table()
        workers = int(table[:, THREAD].max(initial=0))
        self.flags[0] = 0
        with blas.one_thread(), threads.held_workers(workers) as boards:
            posted = np.array([board[POSTED] for board in boards], np.int64)
            _replay(table, np.array([board.ctypes.data for board in boards], np.int64), posted, self.flags)


@contextlib.contextmanager
def recording():
    """Within it, this thread's calls through gvae's threads are recorded into the :class:`Program` it
    yields (nested recordings: the innermost records)."""
    program = Program()
    token = RUNTIME.recording.set(program)
    try:
        yield program
    finally:
        RUNTIME.recording.reset(token)


def recording_open():
    """Whether this thread's calls are being recorded now."""
    return RUNTIME.recording.get() is not None


def check(make):
    """Give the program recorded now (if any) the check of a decision that the calls took from their data
    (a product computed sparse or dense): ``make(flags)`` is the native task that sets ``flags[0]`` (a
    float64 array) to 1 where the decision would come out otherwise. It is written down at this point of
    the program, so that it reads the data the replay computed up to here, and never run while recording
    (see :meth:`Program.holds`); ``make`` may answer None: nothing to check."""
    program = RUNTIME.recording.get()
    if program is not None:
        task = make(program.flags)
        if task is not None:  # (None: nothing to check)
            program.add([task], [0])


def unrecorded(what):
    """Say that ``what`` (computed outside gvae's threads' tasks: NumPy, say) took part in the calls now
    running: a recording open in this thread is refused, since its replay would not compute it."""
    program = RUNTIME.recording.get()
    if program is not None:
        program.refuse(f"{what} ran outside the kernels' tasks")


@jit
def _replay(table, boards, posted, flags):
    """Run the program ``table``: for each group, post its workers' tasks (worker k's board at address
    ``boards[k - 1]``, its count of posted tasks ``posted[k - 1]``, advanced here), run the caller's own
    tasks in order, then wait until every posted task is done; stop there once a check has set
    ``flags[0]``."""
    n = table.shape[0]
    first = 0
    while first < n:
        last = first
        while table[last, LAST] == 0:
            last += 1
        for r in range(first, last + 1):
            k = table[r, THREAD]
            if k > 0:
                board = array_at(boards[k - 1], SIZE, np.int64)
                for s in range(WIDTH - ROW_ARGS):
                    board[ARGS + s] = table[r, ROW_ARGS + s]
                board[KIND] = table[r, TASK_KIND]
                posted[k - 1] += 1
                store_release(board, POSTED, posted[k - 1])
        for r in range(first, last + 1):
            if table[r, THREAD] == 0:
                perform(table[r, TASK_KIND], table[r], ROW_ARGS)
        for r in range(first, last + 1):
            k = table[r, THREAD]
            if k > 0:
                board = array_at(boards[k - 1], SIZE, np.int64)
                while load_acquire(board, DONE) != posted[k - 1]:
                    pause()
        if flags[0] != 0:
            return
        first = last + 1

"""Per-machine tuning: the fastest way of running a kernel call, measured once on this machine and kept.

How a product is best cut over gvae's threads depends on the CPU, its caches and the BLAS's kernels: rules
tuned by hand on one machine left the two-thread step slower than its peers' on another, where its
100-row products ran slower on two threads than on one. So, like FFTW's planner (it times candidate plans
when it first meets a size and keeps the winner as "wisdom"), a call that meets a key with no plan yet
(:mod:`gvae.kernels.matmul_cpu`: a product's shape, layout, dtype and thread count) times its candidates on
its own operands, interleaved, each trial followed by a hand-over to every worker (so that a candidate
which leaves the cores busy pays for it), and keeps the fastest: the call's own rule unless another is
faster by more than MARGIN. That costs about BUDGET_SECONDS (MIN_ROUNDS rounds, where they take longer)
once per key.

The plans are kept in one JSON file per machine in gvae's cache folder (``$XDG_CACHE_HOME/gvae/plans``, else
``~/.cache/gvae/plans``), named by a digest of what they depend on (:func:`identity`: the CPU, its core
count, NumPy's BLAS and its kernels, the versions of NumPy and Numba, gvae's kernel sources). A process adds
its plan under the file's lock (``plans-DIGEST.json.lock``), re-reading the file first, and the first plan
recorded for a key is the one every process uses: so a run resumed in another process computes its products
as the one before did, and its results are the same bits (docs/explanation/threads.md, exact resume). Where no cache
folder can be written, nothing is measured and every call follows its rule, for the same reason. A damaged
file (not UTF-8, not JSON, nested too deep, not this format; a link, a FIFO or anything but a regular file;
larger than PLAN_BYTES) is ignored, with a warning naming it, and rebuilt. :func:`set_tuning` (or
``GVAE_TUNING=off`` in the environment) turns tuning off; :func:`clear` (``gvae plans --clear``) removes the
kept plans. What this process knows of them is :data:`state.RUNTIME`'s (``tuning_*``).
"""
import hashlib
import json
import os
import platform
import time
import warnings
from pathlib import Path

from . import blas, programs
from ...io.shared_files import file_lock, read_small_text, reader_lock, replace_text, writable_folder
from .compile_cache import sources_digest
from .state import RUNTIME

__all__ = ["set_tuning", "active", "generation", "recorded", "tune", "fastest", "identity", "plan_file", "plans",
           "clear", "folder"]

FORMAT = 1
MARGIN = 0.05          # another candidate replaces the rule only when its median is this much faster
BUDGET_SECONDS = 0.1   # of timed rounds per key (at least MIN_ROUNDS of them)
MIN_ROUNDS, MAX_ROUNDS = 5, 31
# The most bytes a plan file may hold. A plan takes some 60-80 bytes ("matmul float32 100x784x400 NT 2
# threads": "rows 2"), so this is over ten thousand plans, each measured for about BUDGET_SECONDS: far more
# than a machine's programs meet, while a file of this size is read whole and parsed quickly. A larger
# file is refused as damaged, so none is written larger (:func:`_record`).
PLAN_BYTES = 1 << 20


def generation():
    """A number that changes whenever the kept plans may have (:func:`clear`): callers that remember what
    they looked up keep it with the number. Turning tuning off and on again changes no plan."""
    return RUNTIME.tuning_generation


def set_tuning(on):
    """Measure and keep plans (True, the default unless ``$GVAE_TUNING`` is ``off``), or follow each
    call's rule (False)."""
    if not isinstance(on, bool):
        raise ValueError(f"set_tuning: expected True or False, got {on!r}")
    RUNTIME.tuning_on = on


def folder():
    """The folder of the plan files (a Path, not created)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gvae" / "plans"


def _cpu():
    """The CPU's identity from /proc/cpuinfo (vendor, family, model, stepping and name: the name alone,
    which some hypervisors shorten to the vendor's brand, does not tell two generations apart), else
    Python's."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                name, _, value = line.partition(":")
                name = name.strip()
                if not name:
                    break  # the first processor's block is enough
                if name in ("vendor_id", "cpu family", "model", "stepping", "model name", "CPU implementer",
                            "CPU part"):
                    fields[name] = value.strip()
    except OSError:  # no /proc/cpuinfo (not Linux): Python's names of the processor below
        fields = {}
    return fields or {"processor": platform.processor(), "machine": platform.machine()}


def identity():
    """What a plan depends on, as a JSON-able dict (computed once per process)."""
    if RUNTIME.tuning_identity is None:
        import numba
        import numpy
        RUNTIME.tuning_identity = {"format": FORMAT, "cpu": _cpu(), "cores": os.cpu_count(),
                                   "numpy": numpy.__version__, "numba": numba.__version__, "blas": blas.core(),
                                   "blas_held": blas.settable(), "kernels": sources_digest()}
    return RUNTIME.tuning_identity


def plan_file():
    """This machine's plan file (a Path; it may not exist)."""
    digest = hashlib.sha256(json.dumps(identity(), sort_keys=True).encode()).hexdigest()[:16]
    return folder() / f"plans-{digest}.json"


def _writable():
    if RUNTIME.tuning_writable is None:
        RUNTIME.tuning_writable = writable_folder(folder())
    return RUNTIME.tuning_writable


def active():
    """Whether calls measure and keep their plans here: tuning is on and the plan folder writable."""
    if RUNTIME.tuning_on is None:  # the environment's word, read once
        RUNTIME.tuning_on = os.environ.get("GVAE_TUNING", "").strip().lower() not in ("off", "0", "no", "false")
    return RUNTIME.tuning_on and _writable()


def _read(path):
    """The plans in the file ``path`` ({key: choice}); {} for none. A damaged file (see the module's
    notes; not this machine's, not a mapping of names to names) gives {} and a warning naming it: it is
    rebuilt when the next plan is recorded."""
    try:
        text = read_small_text(path, PLAN_BYTES)
    except OSError as exc:
        warnings.warn(f"gvae: cannot read the plan file {path} ({exc}); measuring again", RuntimeWarning, stacklevel=3)
        return {}
    except ValueError as exc:
        return _damaged(path, exc)
    if text is None:
        return {}
    try:
        content = json.loads(text)
    except RecursionError:  # the C parser's depth is Python's recursion limit
        return _damaged(path, "its JSON is nested too deeply")
    except ValueError as exc:
        return _damaged(path, f"not JSON: {exc}")
    if not isinstance(content, dict) or content.get("machine") != identity():
        return _damaged(path, "it was written for another machine or format")
    found = content.get("plans")
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        return _damaged(path, "its plans are not a mapping of keys to names")
    return found


def _damaged(path, why):
    warnings.warn(f"gvae: the plan file {path} is damaged ({why}); it is ignored and rebuilt", RuntimeWarning,
                  stacklevel=4)
    return {}


def _lock_path():
    return str(plan_file()) + ".lock"


def plans():
    """This machine's kept plans, {key: choice} (read from its file once per process; see :func:`clear`)."""
    if RUNTIME.tuning_plans is None:
        with reader_lock(_lock_path()):  # unlocked where it cannot be held: every writer replaces the file whole
            RUNTIME.tuning_plans = _read(plan_file())
    return RUNTIME.tuning_plans


def recorded(key, choices):
    """The kept plan of ``key`` when it is one of ``choices``, else None."""
    found = plans().get(key)
    return found if found in choices else None


def _record(key, choice, choices):
    """Keep ``choice`` for ``key`` unless another process kept one of ``choices`` first; the kept one, or
    None where the file is full (PLAN_BYTES). The file is re-read under the exclusive lock, and replaced
    whole by a rename."""
    path = plan_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(_lock_path(), exclusive=True):
        kept = _read(path)
        if kept.get(key) not in choices:
            text = json.dumps({"machine": identity(), "plans": {**kept, key: choice}}, sort_keys=True, indent=1)
            if len(text.encode()) > PLAN_BYTES:
                # Written, it would be refused as damaged and every plan in it lost: this one is not kept.
                warnings.warn(f"gvae: the plan file {path} is full ({PLAN_BYTES} bytes); products not planned "
                              "yet follow their rules (`gvae plans --clear` starts it again)", RuntimeWarning,
                              stacklevel=3)
                RUNTIME.tuning_plans = kept
                return None
            replace_text(path, text)
            kept[key] = choice
    RUNTIME.tuning_plans = kept
    return kept[key]


def _ticks():
    """(busy clock ticks of the CPUs this process may run on, this process's own ticks) from /proc, or None
    where it does not say. Busy: user, nice, system, irq, softirq and steal (a hypervisor giving the CPU to
    another guest)."""
    try:
        cpus = os.sched_getaffinity(0)
        busy = 0
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("cpu") and line[3:4].isdigit():
                    name, *values = line.split()
                    if int(name[3:]) in cpus:
                        v = [int(x) for x in values[:8]]
                        busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return busy, int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, AttributeError, ValueError, IndexError):
        return None


def _disturbed(before, after, seconds):
    """Whether other work ran on this process's CPUs between the :func:`_ticks` readings ``before`` and
    ``after``, ``seconds`` apart: more than a fifth of one CPU's time, beyond two ticks of rounding."""
    if before is None or after is None:
        return False
    others = (after[0] - before[0]) - (after[1] - before[1])
    return others > 0.2 * seconds * os.sysconf("SC_CLK_TCK") + 2


def fastest(candidates, default, after):
    """The name of the fastest of ``candidates`` ({name: callable}; ``default`` among them), each timed as a
    call followed by ``after()``: rounds of every candidate in turn, the order rotated each round, for at
    least MIN_ROUNDS and about BUDGET_SECONDS; medians compared. ``default`` unless the fastest other is
    faster by more than MARGIN, or other processes used this process's CPUs meanwhile (:func:`_disturbed`):
    a split product measures slow when another program holds a core, and the plan is kept for good
    (measured beside a test run, every 100-row product of the step once went whole, and the step ran
    slower than with the rules' cuts: docs/explanation/threads.md)."""
    names = list(candidates)
    for name in names:  # once untimed: first calls compile, allocate, wake workers
        candidates[name]()
        after()
    times = {name: [] for name in names}
    ticks = _ticks()
    start = time.perf_counter()
    rounds = 0
    while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and time.perf_counter() - start < BUDGET_SECONDS):
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            candidates[name]()
            after()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    if _disturbed(ticks, _ticks(), time.perf_counter() - start):
        return default
    median = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}
    best = min(names, key=median.get)
    return default if median[default] <= (1 + MARGIN) * median[best] else best


def tune(key, candidates, default, after):
    """The plan of ``key``: the kept one, else :func:`fastest` of ``candidates`` measured now and kept (or the
    one another process kept first). Call only when :func:`active`."""
    choice = recorded(key, candidates)
    if choice is not None:
        return choice
    programs.unrecorded("a tuning measurement")  # its candidates' runs are no part of the calls
    measured = fastest(candidates, default, after)
    try:
        kept = _record(key, measured, candidates)
        return default if kept is None else kept  # not kept: the rule, as every other process will follow
    except OSError as exc:  # the folder became unwritable: the rule from now on, as for one never writable
        warnings.warn(f"gvae: cannot keep plans in {folder()} ({exc}); products follow their rules", RuntimeWarning,
                      stacklevel=2)
        RUNTIME.tuning_writable = False
        return default


def clear():
    """Remove the kept plans of every machine from the plan folder; the names of the removed files."""
    removed = []
    where = folder()
    if where.is_dir():
        for path in sorted(where.glob("plans-*.json")):
            with file_lock(str(path) + ".lock", exclusive=True):
                path.unlink(missing_ok=True)
            removed.append(path.name)
    RUNTIME.tuning_plans = None
    RUNTIME.tuning_generation += 1
    return removed

"""Plans: which way of running a kernel call is fastest on this machine, measured once and kept on disk
(the pattern of FFTW's planner and ATLAS's install-time tuning).

A plan maps a key (a string naming a call's shape, layout, dtype and thread count) to the name of the
candidate that ran it fastest, with the seconds each candidate took. The first call with a new key times
the candidates on arrays of its own shape (:func:`choose`), a few tens of milliseconds, and every later
call in any process on the same machine reads the choice. So a run uses one plan from its first step to
its last, and a resumed run the same plan as the run it continues.

The file is ``$GVAE_PLAN_DIR/plans-<machine>.json`` (default ``$XDG_CACHE_HOME/gvae`` or ``~/.cache/gvae``),
one per machine: the CPU model, the cores this process may use, and the versions of Python, NumPy and
its BLAS name it, since a plan measured elsewhere says nothing here. It is written by a rename (a reader
never sees half a file); two processes that plan at once each merge what is on disk before writing, and
an entry lost to that race is measured again later. A file that cannot be read as a plan is ignored and
replaced. :func:`clear` (``gvae plan --clear``) removes this machine's plans: do so after measuring on a
busy machine, whose timings are noise.
"""
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

__all__ = ["choose", "plan_file", "entries", "describe", "clear", "machine"]

# Each candidate runs once to warm up, then rounds of one call each, interleaved so that a slow moment of
# the machine hits every candidate alike; the minimum of its calls is its time. Fewer rounds for long
# calls: the choice between candidates that differ by more than the noise needs few.
ROUNDS = 7
BUDGET_SECONDS = 0.25

_memory = {}     # key -> name, this process's plans (read from the file once)
_loaded = []     # the path the memory was filled from


def machine():
    """The facts a plan depends on: {cpu, cores, python, numpy, blas}."""
    import numpy as np
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in
                                                       f.read().split("\n\n")[0].splitlines() if ":" in line)}
        # The model name alone can be as vague as "AMD EPYC": the family, model and instruction sets too.
        flags = hashlib.sha256(info.get("flags", "").encode()).hexdigest()[:8]
        cpu = f"{info.get('model name', cpu)} (family {info.get('cpu family')}, model {info.get('model')}, flags {flags})"
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - an older NumPy: the version names the wheel's BLAS
        blas = "?"
    return {"cpu": cpu, "cores": cores, "python": sys.version.split()[0], "numpy": np.__version__, "blas": blas}


def plan_file():
    """The path of this machine's plan file (it may not exist)."""
    folder = os.environ.get("GVAE_PLAN_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "gvae")
    digest = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser(folder), f"plans-{digest}.json")


def _read(path):
    """{key: {"choice": name, "seconds": {name: s}}} from ``path``; {} when absent or not a plan file."""
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        plans = found["plans"]
        if isinstance(plans, dict) and all(_is_entry(v) for v in plans.values()):
            return plans
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}


def _is_entry(entry):
    """Whether ``entry`` is {"choice": name, "seconds": {name: s, ...}} with the choice among the names."""
    return (isinstance(entry, dict) and isinstance(entry.get("seconds"), dict)
            and entry.get("choice") in entry["seconds"]
            and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in entry["seconds"].values()))


def _write(path, key, entry):
    """Merge ``key: entry`` into the file at ``path`` by a rename; a folder that cannot be written keeps the
    plan in this process only."""
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        plans = {**_read(path), key: entry}
        fd, tmp = tempfile.mkstemp(prefix=".plans.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"machine": machine(), "plans": plans}, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a plan file reads like any other cache file
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


def _time(candidates):
    """{name: the minimum seconds of a call} for the callables ``candidates`` {name: f}."""
    best = {}
    for name, f in candidates.items():
        start = time.perf_counter()
        f()
        best[name] = time.perf_counter() - start
    rounds = max(1, min(ROUNDS, int(BUDGET_SECONDS / max(sum(best.values()), 1e-9))))
    for _ in range(rounds):
        for name, f in candidates.items():
            start = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def choose(key, make_candidates):
    """The name of the fastest candidate for ``key``: from this process's memory, else this machine's plan
    file, else measured now on the callables ``make_candidates()`` returns ({name: f}, each computing the
    same result) and kept in both."""
    if key in _memory:
        return _memory[key]
    path = plan_file()
    if _loaded != [path]:  # first use, or GVAE_PLAN_DIR changed
        _memory.clear()
        _memory.update((k, v["choice"]) for k, v in _read(path).items())
        _loaded[:] = [path]
        if key in _memory:
            return _memory[key]
    seconds = _time(make_candidates())
    choice = min(seconds, key=seconds.get)
    _memory[key] = choice
    _write(path, key, {"choice": choice, "seconds": seconds})
    return choice


def entries():
    """This machine's plans as they are on disk: {key: {"choice": name, "seconds": {name: s}}}."""
    return _read(plan_file())


def describe(threads=None):
    """Lines naming this machine and its plans (those for ``threads`` threads when given), each plan's
    choice and its candidates' milliseconds, fastest first: what ``gvae plan`` and the benchmarks print."""
    facts = machine()
    lines = [f"CPU {facts['cpu']}, {facts['cores']} cores; Python {facts['python']}, NumPy {facts['numpy']} "
             f"({facts['blas']})"]
    for key, entry in sorted(entries().items()):
        if threads is None or key.endswith(f"threads {threads}"):
            times = ", ".join(f"{name} {s * 1e3:.3f}"
                              for name, s in sorted(entry["seconds"].items(), key=lambda kv: kv[1]))
            lines.append(f"  {key}: {entry['choice']} (ms: {times})")
    return lines


def clear():
    """Forget this machine's plans, on disk and in this process; returns whether a file was removed."""
    _memory.clear()
    _loaded.clear()
    try:
        os.unlink(plan_file())
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False

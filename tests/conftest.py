import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Numba compiles on first call, so no per-example deadline; CI keeps example counts small.
settings.register_profile("ci", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The tests' products follow the hand-made rules (gvae.kernels.cpu.tuning): a plan measured under the test run's
# load would be noise, and kept in the user's cache folder, it would outlive the tests. Set here, so that
# the commands the tests start inherit it; tests/test_tuning.py turns tuning on in a folder of its own.
os.environ["GVAE_TUNING"] = "off"


def pytest_configure(config):
    # Warnings of the peers' own code that no change of gvae's removes, each filtered for its reason:
    # - JAX warns at every fork once it is imported (another test in the same xdist worker imports it). The
    #   forks here run no JAX: tests/test_threads.py forks on purpose to check gvae's threads in the child,
    #   and subprocess execs a new program straight after its fork.
    config.addinivalue_line("filterwarnings", r"ignore:os\.fork\(\) was called\..*JAX is multithreaded:RuntimeWarning")
    # - PyTorch's forward mode loads its JVP decompositions with its own deprecated torch.jit.script, and
    #   torch.compile imports torch.utils.mkldnn, whose classes use its deprecated torch.jit.script_method.
    config.addinivalue_line("filterwarnings",
                            r"ignore:`torch\.jit\.script(_method)?` is deprecated:DeprecationWarning:torch")
    config.addinivalue_line("markers", "integration: touches real MNIST (set GVAE_INTEGRATION=1)")
    config.addinivalue_line("markers", "slow: a case over about half a second warm (subprocesses, sweeps on Dask, "
                                       "refinements to convergence, training steps, the largest kernels): a "
                                       "quarter of the tests, over two thirds of the time; the quick loop "
                                       "leaves them out: -m 'not slow'")


@pytest.fixture
def split_everything(monkeypatch):
    """gvae's threads on for the test, and every kernel call split however small (tests/test_threads.py,
    tests/test_programs.py); restored after the test."""
    from gvae import kernels
    from gvae.kernels import matmul_cpu
    from gvae.kernels.cpu import threads
    monkeypatch.setattr(threads, "MIN_BLOCK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "WAKE_SECONDS", 0.0)  # handed over whether a worker sleeps or not
    monkeypatch.setattr(matmul_cpu, "MIN_FLOPS", 0.0)
    monkeypatch.setattr(matmul_cpu, "MIN_SIDE_BY_SIDE", 0.0)
    monkeypatch.setattr(matmul_cpu, "MIN_ROWS", 1)
    yield
    kernels.set_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """gvae's threads set to one for the tests of a module, whatever earlier tests in the process left (an
    evaluation runs its batches side by side on more), and restored after them."""
    from gvae import kernels
    before = kernels.get_threads()
    kernels.set_threads(1)
    yield
    kernels.set_threads(before)


@pytest.fixture
def jax_x64():
    """JAX's x64 mode set process-wide for a test and restored after it (the jax.enable_x64 context is local
    to its thread, and XLA may run gvae.jax's callbacks on another)."""
    import jax
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture
def data_file(tmp_path):
    """A small data set of 784-pixel images in the .npz layout ``gvae --data`` reads."""
    from tests.helpers import write_data
    return write_data(tmp_path / "tiny.npz")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """On a cold Numba cache, compile the kernels in one process per core (tests/warm_kernels.py), each a
    share, before any test (and any xdist worker) starts: otherwise every worker compiles all of them for
    itself. Only for runs over whole folders (the README's command), not for single files or tests. Says
    so when scripts (the examples) import another copy of gvae than the tests: its cache is its own."""
    config = session.config
    if hasattr(config, "workerinput") or not all(Path(a).is_dir() for a in config.args):
        return
    root = Path(__file__).resolve().parents[1]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    from tests.warm_kernels import script_package
    other = script_package(root)
    if reporter is not None and other is not None and not os.path.samefile(other, root / "gvae"):
        reporter.write_line(f"gvae: the tests compile the kernels of {root / 'gvae'}, but scripts import the gvae "
                            f"at {other}, whose Numba cache is its own: they compile again there on first use "
                            "(pip install -e . makes the two one)")
    from gvae.kernels.cpu.compile_cache import cache_is_cold
    if not cache_is_cold():
        return
    from tests.warm_kernels import GROUPS
    parts = max(1, min(len(GROUPS), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                       else os.cpu_count() or 1))
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "tests.warm_kernels", str(i), str(parts)], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(parts)]
    # the error's line: the last but gvae's own lines on compiling (the last of them may follow a traceback)
    failed = [[line for line in p.communicate()[1].strip().splitlines() if not line.startswith("gvae: compil")][-1:]
              for p in procs if p.wait() != 0]
    if reporter is not None:
        reporter.write_line(f"gvae: compiled the Numba kernels into their cache in {parts} processes, "
                            f"{time.perf_counter() - start:.0f} s"
                            + (f" ({len(failed)} failed, the tests compile what they miss: {failed})" if failed else ""))



def skip_reasons(reports):
    """[(count, reason)] of the skipped test ``reports``, most first: the reason each skip gave, counted
    over the places that gave it."""
    counts = {}
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(((n, reason) for reason, n in counts.items()), key=lambda c: (-c[0], c[1]))


def pytest_terminal_summary(terminalreporter):
    """Why the tests that skipped did (no CUDA GPU, no Chromium, ...), one line per reason, unless -rs lists
    each place already: a count alone ("546 skipped") reads like tests that were lost."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or "s" in terminalreporter.reportchars:
        return
    terminalreporter.write_sep("-", "why tests skipped")
    for count, reason in skip_reasons(skipped):
        terminalreporter.write_line(f"{count:5d} skipped: {reason}")

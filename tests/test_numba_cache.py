"""gvae's kernels in Numba's on-disk cache when several processes compile them at once (gvae/kernels/cpu/jit.py,
compile_cache.py, compilations.py).

Numba picks a cached kernel's data file name from the index it read, so two processes that compile two
signatures of one kernel together could both write data file 1, and the index of one would point at the
other's code. conftest.py's warm-up does exactly this on a cold cache (one process per core, dtypes split
among them), and CI once failed so: every float64 call of band_outer raised "can't unbox array".

Compiling on a cold cache is announced (issue 50, a silent 345 s), and a cache hit is silent; a script that
imports another copy of gvae than the tests (whose cache is its own) is found."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gvae.kernels.cpu.compile_cache import CACHING
from tests.helpers import EXAMPLE_STEP

ROOT = Path(__file__).resolve().parents[1]

KERNEL = """\
from gvae.kernels.cpu.jit import jit


@jit
def total(x):
    return x.sum() * 2
"""

# One compiling process: waits for the others (the file "go"), then compiles total for one dtype. Its
# index is written a second after it was read, as on a slow file system: without gvae's lock every
# process reads the index before any writes it.
COMPILE = """\
import os, sys, time
import numpy as np
import numba.core.caching as caching

folder, dtype = sys.argv[1], sys.argv[2]
save_index = caching.IndexDataCacheFile._save_index


def slow(self, overloads):
    time.sleep(1.0)
    save_index(self, overloads)


caching.IndexDataCacheFile._save_index = slow
sys.path.insert(0, folder)
import racekernel
open(os.path.join(folder, "ready-" + dtype), "w").close()
while not os.path.exists(os.path.join(folder, "go")):
    time.sleep(0.01)
print(racekernel.total(np.arange(5).astype(dtype)))
"""

# A later process: every dtype's kernel from the cache, none compiled.
LOAD = """\
import sys
import numpy as np

sys.path.insert(0, sys.argv[1])
import racekernel
print([float(racekernel.total(np.arange(5).astype(d))) for d in sys.argv[2:]])
print(sum(racekernel.total.stats.cache_misses.values()), sum(racekernel.total.stats.cache_hits.values()))
"""

DTYPES = ["float32", "float64", "int64", "int32"]


@pytest.mark.slow
def test_processes_compiling_one_kernel_at_once_leave_each_signature_its_own_code(tmp_path):
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    (tmp_path / "racekernel.py").write_text(KERNEL)
    procs = [subprocess.Popen([sys.executable, "-c", COMPILE, str(tmp_path), d], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for d in DTYPES]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{d}").exists() for d in DTYPES):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and float(out) == 20.0, err
    out = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path), *DTYPES], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    values, counts = out.stdout.splitlines()
    assert values == str([20.0] * len(DTYPES))
    assert counts == f"0 {len(DTYPES)}"  # all from the cache, none compiled again


ENTRY_KERNEL = """\
def double_first(args):
    args[0] = args[0] * 2
"""

# One process: the C entry of double_first (as gvae.kernels.cpu.entries compiles its entries), called on [21].
ENTRY = """\
import ctypes, sys
from numba import types
sys.path.insert(0, sys.argv[1])
import entrykernel
from gvae.kernels.cpu.jit import compile_entry
compiled = compile_entry(entrykernel.double_first, types.void(types.CPointer(types.int64)))
args = (ctypes.c_int64 * 1)(21)
ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_int64))(compiled.address)(args)
print(args[0], compiled.cache_hits)
"""


@pytest.mark.slow
def test_a_c_entry_is_compiled_once_and_loaded_from_the_cache_after(tmp_path):
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    (tmp_path / "entrykernel.py").write_text(ENTRY_KERNEL)
    runs = [subprocess.run([sys.executable, "-c", ENTRY, str(tmp_path)], capture_output=True, text=True)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert [r.stdout.split() for r in runs] == [["42", "0"], ["42", "1"]]


# Two kernels, one calling the other, called for the dtype given; with "quiet", gvae's loggers set to WARNING
# first, with "logged", logging configured at INFO.
ANNOUNCED_KERNEL = """\
from gvae.kernels.cpu.jit import jit


@jit
def inner(x):
    return x.sum()


@jit
def outer(x):
    return inner(x) * 2
"""

ANNOUNCED = """\
import logging, sys
import numpy as np
if sys.argv[3] == "quiet":
    logging.getLogger("gvae").setLevel(logging.WARNING)
elif sys.argv[3] == "logged":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
sys.path.insert(0, sys.argv[1])
import announcedkernel
print(float(announcedkernel.outer(np.arange(5).astype(sys.argv[2]))))
"""


@pytest.mark.slow
def test_compiling_is_announced_before_and_after_and_a_cache_hit_says_nothing(tmp_path):
    """Issue 50: a cold cache compiled for minutes without a word. The first process says what it compiles
    and where, then how many kernels took how long; the next, loading them, says nothing; a level set on
    gvae's logger silences it, and logging configured by the application carries it."""
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    (tmp_path / "announcedkernel.py").write_text(ANNOUNCED_KERNEL)

    def run(dtype, mode="plain"):
        done = subprocess.run([sys.executable, "-c", ANNOUNCED, str(tmp_path), dtype, mode], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and float(done.stdout) == 20.0, done.stderr
        return done.stderr.splitlines()

    first = run("float32")
    assert len(first) == 2, first
    assert first[0].startswith("gvae: compiling Numba kernels for float32 that are not in the cache yet, into "
                               f"{tmp_path / '__pycache__'} (")
    assert first[1].startswith("gvae: compiled 2 Numba kernels in ") and first[1].endswith(" s; later runs load "
                                                                                             "them from the cache")
    assert run("float32") == []            # both loaded from the cache
    assert run("float64", "quiet") == []   # compiled, silenced
    logged = run("int64", "logged")
    assert [line.split(":")[0] for line in logged] == ["INFO gvae.kernels.cpu.compilations"] * 2, logged
    assert "compiling Numba kernels that are not in the cache yet" in logged[0]
    assert run("int64") == [] and run("float64") == []


# Two bursts of compilation apart in one process (float32, then float64 after a quiet pause), then a
# report, then the program's own line, and the seconds compiling against the time taken.
TWO_BURSTS = """\
import sys, time
import numpy as np
from gvae.kernels.cpu.compilations import QUIET_SECONDS
from gvae.kernels.cpu.jit import compiling_seconds, report_compilations
sys.path.insert(0, sys.argv[1])
import announcedkernel
start = time.perf_counter()
announcedkernel.outer(np.arange(5).astype(np.float32))
time.sleep(QUIET_SECONDS + 0.5)
announcedkernel.outer(np.arange(5).astype(np.float64))
report_compilations()
print("the program's line", file=sys.stderr)
print(compiling_seconds(), time.perf_counter() - start - QUIET_SECONDS - 0.5)
"""


@pytest.mark.slow
def test_two_bursts_of_compilation_are_one_line_before_the_programs_own(tmp_path):
    """A training run compiled in two bursts (35 s, then 117 s) under two lines, the second after the epoch
    line it had delayed: the process announces its first burst only, and one line counts both where the
    program reports, before its own line; the seconds compiling leave the pause between them out."""
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    (tmp_path / "announcedkernel.py").write_text(ANNOUNCED_KERNEL)
    done = subprocess.run([sys.executable, "-c", TWO_BURSTS, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3 and lines[0].startswith("gvae: compiling Numba kernels for float32 that are not in "), lines
    assert lines[1].startswith("gvae: compiled 4 Numba kernels in ") and lines[2] == "the program's line", lines
    compiling, working = map(float, done.stdout.split())
    assert 0 < compiling <= working and float(lines[1].split(" in ")[1].split(" s;")[0]) == pytest.approx(
        compiling, abs=0.06)


# One process: racekernel's total called once, every warning recorded.
LOCKED_OUT = """\
import sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import racekernel
    print(float(racekernel.total(np.arange(5).astype(sys.argv[2]))))
print("|".join(str(w.message) for w in caught))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_cache_lock_that_is_a_link_or_a_fifo_skips_the_cache_with_a_warning(tmp_path, kind):
    """Issue 51: a link (or a FIFO) where the lock of a cache folder goes is not followed (nor opened to
    wait on): the kernel is compiled and runs, neither loaded from nor saved to that folder, and a warning
    names the lock, in every process, until it is removed."""
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    (tmp_path / "racekernel.py").write_text(KERNEL)
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    lock, elsewhere = cache / ".gvae-numba.lock", tmp_path / "elsewhere" / "made-by-gvae"
    if kind == "link":
        lock.symlink_to(elsewhere)
    else:
        os.mkfifo(lock)
    for dtype in ("float64", "float64", "float32"):
        done = subprocess.run([sys.executable, "-c", LOCKED_OUT, str(tmp_path), dtype], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        value, warned = done.stdout.splitlines()
        assert float(value) == 20.0
        assert f"{lock} is {'a symbolic link' if kind == 'link' else 'not a regular file'}" in warned, warned
    assert not elsewhere.exists() and not list(cache.glob("*.nb[ic]"))
    assert lock.is_symlink() if kind == "link" else lock.is_fifo()


# A copy of gvae whose kernel cache's lock is a link: the stale cache cannot be dropped under it at import.
LOCKED_AT_IMPORT = """\
import warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from gvae import kernels
    from gvae.kernels.cpu.compile_cache import CACHING
    print(CACHING, float(kernels.band_logdet(np.full((1, 1, 3), np.e))[0]))
print("|".join(str(w.message) for w in caught))
"""


@pytest.mark.slow
def test_a_link_at_the_kernel_caches_lock_is_a_warning_at_import_and_no_cache(tmp_path):
    """The in-tree cache of a fresh copy of gvae is dropped under the locks of its folders when the sources
    changed; with a link where one goes, importing gvae warns, naming it, and compiles without the cache."""
    pkg = tmp_path / "site" / "gvae"
    shutil.copytree(ROOT / "gvae", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    lock = pkg / "kernels" / "__pycache__" / ".gvae-numba.lock"
    lock.parent.mkdir()
    lock.symlink_to(tmp_path / "elsewhere")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = str(pkg.parent)
    done = subprocess.run([sys.executable, "-B", "-c", LOCKED_AT_IMPORT], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result, warned = done.stdout.splitlines()[-2:]
    assert result == "False 3.0"
    assert f"{lock} is a symbolic link" in warned and "cannot cache" in warned, warned
    assert not (tmp_path / "elsewhere").exists() and not list(pkg.rglob("*.nb[ic]"))


def test_a_script_importing_another_copy_of_gvae_is_found(tmp_path, monkeypatch):
    """Issue 50: after the suite, examples/torch_banded_vae.py compiled its kernels again (151 s): a script
    imports the installed gvae, the tests the clone's, and another copy has a Numba cache of its own.
    conftest.py says so before a run; here the other copy comes first on the path."""
    from tests.warm_kernels import script_package
    other = tmp_path / "site" / "gvae"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(other.parent))
    assert script_package(ROOT) == other


@pytest.mark.slow
def test_the_pytorch_examples_step_compiles_nothing_the_warm_up_did_not(tmp_path):
    """The kernels of the PyTorch example (gvae.torch on float32 tensors, through the band fronts' read-only
    views) are those the warm-up's float32 band calls compile (tests/warm_kernels.py): after them a new
    process loads every one from the cache, where a signature of its own (another dtype, layout or
    writability) would compile again, announced on stderr."""
    pytest.importorskip("torch")
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    warm = subprocess.run([sys.executable, "-c", "import numpy as np; from tests.warm_kernels import _band; "
                           "_band(np.float32)"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert warm.returncode == 0, warm.stderr
    step = subprocess.run([sys.executable, "-c", EXAMPLE_STEP, str(ROOT / "examples" / "torch_banded_vae.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert step.returncode == 0, step.stderr
    assert "gvae: compil" not in step.stderr, step.stderr

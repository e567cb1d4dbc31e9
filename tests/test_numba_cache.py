"""gvae's kernels in Numba's on-disk cache when several processes compile them at once (gvae/kernels/jit.py).

Numba picks a cached kernel's data file name from the index it read, so two processes that compile two
signatures of one kernel together could both write data file 1, and the index of one would point at the
other's code. conftest.py's warm-up does exactly this on a cold cache (one process per core, dtypes split
among them), and CI once failed so: every float64 call of band_outer raised "can't unbox array"."""
import subprocess
import sys
import time

import numpy as np
import pytest

from gvae.kernels.jit import CACHING

KERNEL = """\
from gvae.kernels.jit import jit


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

# One process: the C entry of double_first (as native_cpu compiles its entries), called on [21].
ENTRY = """\
import ctypes, sys
from numba import types
sys.path.insert(0, sys.argv[1])
import entrykernel
from gvae.kernels.jit import compile_entry
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

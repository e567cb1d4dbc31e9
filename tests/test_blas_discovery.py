"""How gvae finds the BLAS whose thread count it holds (gvae/kernels/cpu/blas.py): threadpoolctl's scan
where it is installed, the Linux maps without it, NumPy's own library first, and the thread-count
functions of OpenBLAS, MKL and BLIS bound and held."""
import ctypes
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gvae.kernels.cpu import blas

# A library under MKL's or BLIS's file name with their thread-count functions (what gvae binds of them).
_FAKE = """
static int count = 4;
int MKL_Get_Max_Threads(void) { return count; }
void MKL_Set_Num_Threads(int k) { count = k; }
int bli_thread_get_num_threads(void) { return count; }
void bli_thread_set_num_threads(int k) { count = k; }
"""


def _build(folder, name):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build a stand-in BLAS library")
    source = folder / "fake.c"
    source.write_text(_FAKE)
    path = folder / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    return str(path)


def _run(code):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")


def test_numpys_own_library_comes_first():
    home = os.path.dirname(os.path.abspath(np.__file__))
    inside = (os.path.join(home + ".libs", "libscipy_openblas64_-x.so"), "openblas")
    beside = ("/opt/a/libmkl_rt.so.2", "mkl")
    assert blas._numpys_first([beside, inside, beside]) == [inside, beside]
    dylibs = (os.path.join(home, ".dylibs", "libscipy_openblas64_.dylib"), "openblas")
    assert blas._numpys_first([("/a/libblis.so", "blis"), dylibs])[0] == dylibs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the maps are Linux's")
def test_threadpoolctl_and_the_maps_find_the_same_library():
    """With threadpoolctl and without it (its import refused), a process holds the same library and finds
    the same product routines."""
    pytest.importorskip("threadpoolctl")
    code = """
        import sys
        {block}
        import numpy, scipy.linalg  # scipy's own OpenBLAS is loaded too: NumPy's is the one held
        from gvae.kernels.cpu import blas
        print(blas.library())
        print(blas.gemm_address(numpy.dtype("float32")) is not None, blas.core())
        print(blas._loaded())
    """
    with_it = _run(code.format(block=""))
    without = _run(code.format(block="sys.modules['threadpoolctl'] = None"))
    assert with_it[:2] == without[:2]
    assert with_it[2] == without[2]  # every BLAS found, in the same order
    if blas.library() is not None:
        assert "numpy" in with_it[0]


@pytest.mark.parametrize("kind, name", [("mkl", "libmkl_rt.so.2"), ("blis", "libblis.so.4")])
def test_the_thread_count_of_mkl_and_blis_is_bound_and_held(tmp_path, kind, name):
    path = _build(tmp_path, name)
    known = {}
    get, put = blas._controls_of(path, kind, known)
    assert known == {}  # no product routines are taken from a library other than an ILP64 OpenBLAS
    assert get() == 4
    hold = blas._Hold((get, put))
    with hold:
        assert get() == 1
        with hold:
            assert get() == 1
        assert get() == 1
    assert get() == 4
    put(4)


@pytest.mark.parametrize("refuse", [False, True])
def test_a_loaded_mkl_is_found_beside_numpys_library(tmp_path, refuse):
    """A second BLAS loaded into the process is found by its file name, with threadpoolctl and without,
    after NumPy's own."""
    if refuse is False:
        pytest.importorskip("threadpoolctl")
    if not sys.platform.startswith("linux"):
        pytest.skip("the stand-in library is built for Linux")
    path = _build(tmp_path, "libmkl_rt.so.2")
    out = _run(f"""
        import ctypes, sys
        if {refuse}:
            sys.modules['threadpoolctl'] = None
        ctypes.CDLL({path!r}, mode=ctypes.RTLD_GLOBAL)
        import numpy
        from gvae.kernels.cpu import blas
        print(blas._loaded())
        print(blas.library())
    """)
    found = eval(out[0])  # noqa: S307 - a list of (str, str) this test's child printed
    assert (path, "mkl") in found
    if blas.library() is not None:  # NumPy's OpenBLAS first, and it is the one held
        assert found[0][1] == "openblas" and found.index((path, "mkl")) > 0
        assert eval(out[1])[0] == "openblas"  # noqa: S307


def test_a_library_without_the_functions_is_passed_over(tmp_path):
    """A file under a BLAS's name whose thread count cannot be read binds nothing (and nothing raises)."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    source = tmp_path / "empty.c"
    source.write_text("int unrelated(void) { return 0; }\n")
    path = tmp_path / "libmkl_rt.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    assert blas._controls_of(str(path), "mkl", {}) is None
    assert blas._controls_of(str(path), "openblas", {}) is None
    assert blas._controls_of(str(tmp_path / "missing.so"), "blis", {}) is None
    assert ctypes.CDLL(str(path)).unrelated() == 0


@pytest.mark.slow
def test_the_benchmark_of_the_hold_runs():
    """benchmarks/bench_blas_hold.py (docs/notes/2026-11-performance-kernels.md's table) runs and prints its rows."""
    pytest.importorskip("threadpoolctl")
    if blas.library() is None:
        pytest.skip("no BLAS whose thread count can be held")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "bench_blas_hold.py"), "--calls", "200"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| gvae's hold (enter + exit) |" in out.stdout and "finding the library once" in out.stdout

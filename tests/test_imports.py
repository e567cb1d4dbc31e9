"""Importing gvae changes nothing outside gvae, and works where Numba cannot cache."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code, env, cwd):
    return subprocess.run([sys.executable, "-B", "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_import_sets_no_environment_variable():
    code = ("import json, os; before = dict(os.environ); import gvae, gvae.cli, gvae.plots.run, gvae.training; "
            "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    out = _run(code, env, ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.slow
def test_import_and_run_without_a_writable_cache(tmp_path):
    """A copy of the package whose __pycache__ folders cannot be created (a file stands in their place)
    and a home folder that cannot be written: Numba has nowhere to cache. Import must still work, the
    kernels must still run, and one warning must say what to do."""
    pkg = tmp_path / "site" / "gvae"
    shutil.copytree(ROOT / "gvae", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [pkg, *(p for p in pkg.rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a folder")
    unwritable = "/proc/gvae-no-home"  # even root cannot create anything under /proc
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(HOME=unwritable, XDG_CACHE_HOME=unwritable, PYTHONPATH=str(pkg.parent))
    code = ("import numpy as np, gvae; from gvae import kernels; assert gvae.__file__.startswith(%r); "
            "print(float(kernels.band_logdet(np.full((1, 1, 3), np.e))[0]))" % str(pkg))
    out = _run(code, env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout.strip().splitlines()[-1]) - 3.0) < 1e-12
    assert "NUMBA_CACHE_DIR" in out.stderr and "cannot cache" in out.stderr


@pytest.mark.slow
def test_a_cold_kernel_cache_is_announced_once(tmp_path):
    """A fresh copy of the package (no compiled kernels yet): the first command says it compiles, the
    second (cache now warm) does not."""
    pkg = tmp_path / "site" / "gvae"
    shutil.copytree(ROOT / "gvae", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = str(pkg.parent)
    code = ("import numpy as np, gvae.kernels.cpu.compile_cache as j; print(j.cache_is_cold()); from gvae import kernels; "
            "kernels.band_logdet(np.ones((1, 1, 3)))")
    first = _run(code, env, tmp_path)
    second = _run(code, env, tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split()[-1] == "True" and second.stdout.split()[-1] == "False"


@pytest.mark.slow
def test_the_documented_short_names_import():
    """docs/reference/api.md section 4 names gvae.posteriors.FAMILIES: the import statement and the attribute give the
    one module gvae.model.posteriors, in a fresh process whichever comes first."""
    for code in ("import gvae.posteriors, gvae.model.posteriors as m; assert gvae.posteriors is m",
                 "import gvae, gvae.model.posteriors as m; assert gvae.posteriors is m; import gvae.posteriors; "
                 "assert gvae.posteriors is m",
                 "from gvae.posteriors import FAMILIES, get_family; assert get_family('chain').name == 'chain' "
                 "and FAMILIES['chain'] is type(get_family('chain'))"):
        out = _run(code, dict(os.environ, PYTHONPATH=str(ROOT)), ROOT)
        assert out.returncode == 0, out.stderr

"""gvae as a wheel: built from this checkout, it holds every module and CUDA source of gvae/, and installed
alone in a fresh virtual environment outside the checkout (its dependencies seen from this environment's
site-packages, not gvae itself; pip, offline, checks the requirements of its torch and jax extras against them)
it runs ``python -m gvae``, trains a model, reads its CUDA sources, and runs the PyTorch example's step."""
import fcntl
import importlib.util
import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import EXAMPLE_STEP, fake_splits

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("setuptools", reason="building the wheel needs setuptools in this environment")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from this checkout. Under pytest-xdist each worker would build its own, and two
    builds at once from one checkout race on its build/ and egg-info folders (seen 2026-11-30: pip's exit
    status 1), so the workers share one, built by the first under a lock in their common temporary folder."""
    base = tmp_path_factory.getbasetemp()
    out = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "gvae-wheel"
    out.mkdir(exist_ok=True)
    with open(out / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not list(out.glob("gvae-*.whl")):
            built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                    "--no-build-isolation", "--no-index", "-w", str(out), str(ROOT)],
                                   cwd=out, capture_output=True, text=True)
            assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("gvae-*.whl")
    return path


def test_the_wheel_holds_every_module_and_cuda_source_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gvae").rglob("*")
               if p.suffix in (".py", ".cu", ".cuh") and "__pycache__" not in p.parts}
    assert sources and sources <= names, sorted(sources - names)[:10]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gvae = gvae.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.slow
def test_the_wheel_works_alone_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    # The dependencies (NumPy, SciPy, Numba, tqdm, and PyTorch and JAX for the extras) from this environment:
    # its site-packages as a plain path, whose own .pth files (this checkout's editable install among them)
    # are not read. So pip, offline, finds the wheel's requirements and its extras' satisfied, and checks them.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    extras = [name for name in ("torch", "jax") if importlib.util.find_spec(name) is not None]
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                "--no-index", f"{wheel}[{','.join(extras)}]" if extras else str(wheel)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    splits = fake_splits({"train": 60, "valid": 20, "test": 20}, seed=1)
    np.savez(work / "data.npz", **{f"{s}_{part}": splits[s][i] for s in splits for i, part in enumerate("xy")})

    def run(*args):
        return subprocess.run([str(python), *args], cwd=work, capture_output=True, text=True, timeout=600)
    where = run("-c", "import gvae; print(gvae.__file__)")
    assert where.returncode == 0 and where.stdout.strip().startswith(purelib), where
    version = run("-m", "gvae", "--version")
    assert version.returncode == 0 and version.stdout.strip() == "gvae 0.1.0", version
    trained = run("-m", "gvae", "train", "--data", "data.npz", "--latent", "2", "--hidden", "8", "--epochs", "1",
                  "--batch-size", "20", "--posterior", "chain", "--threads", "1", "--quiet", "--out", "run")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((work / "run" / "summary.json").read_text())["test_elbo"] < 0
    sources = run("-c", "from gvae.kernels import backend\nfrom gvae.kernels.cuda import build\n"
                        "import importlib\n"
                        "for m in backend.cuda_modules(): importlib.import_module(m)\n"
                        "print(sum(len(s.text()) > 0 for s in build.SOURCES.values()))")
    assert sources.returncode == 0 and int(sources.stdout) == len(list((ROOT / "gvae").rglob("*.cu"))), sources
    if "torch" in extras:  # the PyTorch example's training step and evaluation on the wheel's gvae
        example = run("-c", EXAMPLE_STEP + "import gvae\nprint(gvae.__file__)\n",
                      str(ROOT / "examples" / "torch_banded_vae.py"))
        assert example.returncode == 0, example.stderr
        assert example.stdout.startswith(purelib), example.stdout

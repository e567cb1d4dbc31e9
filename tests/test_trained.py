"""``gvae.load``: the README's example runs on a small run, and every method agrees with the engine."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gvae
from gvae.training import TrainConfig, train
from tests.helpers import make_data

ROOT = Path(__file__).resolve().parents[1]


def small_run(path, posterior="extgrid"):
    data = make_data(n=200, d=784)
    train(TrainConfig(posterior=posterior, latent=16, hidden=(16,), epochs=1, batch_size=50), data, path,
          progress=False, quiet=True)
    return data


def test_the_readme_example_runs(tmp_path, monkeypatch):
    data = small_run(tmp_path / "extgrid")
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- the block below runs in tests/test_trained.py -->\n```python\n(.*?)```", text, re.S)
    code = block.group(1).replace('"runs/extgrid"', repr(str(tmp_path / "extgrid")))
    monkeypatch.setattr("gvae.io.mnist.load_mnist", lambda path=None: data)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["recon"].shape == (10, 784) and namespace["images"].shape == (64, 784)
    assert namespace["q"].mu.shape == (10, 16) and np.all(namespace["log_px"] < 0)


def test_the_methods_agree_with_the_engine(tmp_path):
    data = small_run(tmp_path / "run", "chain")
    vae = gvae.load(tmp_path / "run")
    assert "chain posterior" in repr(vae) and vae.config.latent == 16
    x = data["test"][0][:6]
    q = vae.encode(x)
    mu = q.mu
    assert q["mu"] is mu  # read by name too, as the dicts encode gave before its records
    np.testing.assert_array_equal(vae.reconstruct(x), vae.decode(mu))
    assert np.all((vae.sample(5) >= 0) & (vae.sample(5) <= 1))
    assert set(np.unique(vae.sample(5, mean=False))) <= {0.0, 1.0}
    ll, elbo = vae.log_likelihood(x, k=200), vae.elbo(x)
    assert ll.shape == elbo.shape == (6,) and np.mean(ll) >= np.mean(elbo) - 1.0  # L_200 >= L_1 on average
    for bad in (x[:, :100], x * 3):
        try:
            vae.encode(bad)
        except ValueError as e:
            assert "784" in str(e) or "[0, 1]" in str(e) or "in [0" in str(e)
        else:
            raise AssertionError("bad images accepted")


def test_threads_are_set_before_numpy_and_numba_load():
    code = ("import sys, os, gvae.process as c; assert 'numpy' not in sys.modules and 'numba' not in sys.modules; "
            "c.set_threads(c.thread_count(['train', '--threads', '1', '--out', 'x'])); "
            "print(os.environ['MKL_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


@pytest.mark.slow
def test_the_command_runs_openblas_on_one_thread_and_gvae_on_the_threads_asked():
    code = ("import os, gvae.cli as c\ntry:\n    c.main(['--threads', '2', '--version'])\nexcept SystemExit:\n    pass\n"
            "import gvae.kernels as k; print(os.environ['OPENBLAS_NUM_THREADS'], k.get_threads())")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**env, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["1", "2"]

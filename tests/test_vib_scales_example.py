"""examples/vib_scales.py on a small classify run of generated data: the scales it reports are those of a
hand-written NumPy pass of the encoder (sigma = softplus(rho) + floor, the head's second half), for the
weight average, the last and the best parameters; a run of another task and a missing folder are refused
with a message."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gvae.cli import main as gvae_main
from gvae.io.mnist import load_mnist
from gvae.training import checkpoint
from gvae.training.runs import load_model
from tests.test_vib import _bars

spec = importlib.util.spec_from_file_location("vib_scales",
                                              Path(__file__).resolve().parents[1] / "examples" / "vib_scales.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def _run(tmp_path, *extra):
    data, out = _bars(tmp_path), tmp_path / "run"
    assert gvae_main(["train", "--task", "classify", "--classes", "6", "--data", str(data), "--latent", "3",
                      "--hidden", "8", "--activation", "relu", "--batch-size", "50", "--epochs", "2", "--polyak", "0.9",
                      "--input-range", "signed", "--scale-offset", "5", "--out", str(out), "--quiet", *extra]) == 0
    return data, out


def _by_hand(flat, shapes, x):
    """sigma of the 784-8-6 ReLU encoder (latent 3) from the flat parameter vector cut at the model's
    shapes, in their order (the checkpoint's meta lists them sorted by name), in float64."""
    p, at = {}, 0
    for name, shape in shapes.items():
        p[name], at = flat[at:at + int(np.prod(shape))].reshape(shape), at + int(np.prod(shape))
    assert at == flat.size
    h = np.maximum(x @ p["enc.W0"] + p["enc.b0"], 0) @ p["enc.W1"] + p["enc.b1"]
    return np.logaddexp(0.0, h[:, 3:]) + 1e-4


@pytest.mark.parametrize("which, array", [("average", "average_params"), ("last", "params"), ("best", "best_params")])
def test_the_scales_are_the_encoders(tmp_path, which, array):
    data, out = _run(tmp_path)
    arrays, _ = checkpoint.load(out / "checkpoint.npz")
    x = 2 * load_mnist(str(data))["test"][0].astype(np.float64) - 1
    sigma, floor = example.scales(str(out), which, load_mnist(str(data)))
    assert floor == 1e-4 and sigma.shape == (100, 3)
    shapes = load_model(str(out))[0].param_shapes()
    np.testing.assert_allclose(sigma, _by_hand(arrays[array].astype(np.float64), shapes, x), rtol=1e-5)
    # rho starts 5 lower (--scale-offset 5): after two short epochs every scale lies far below softplus(0).
    assert sigma.max() < 0.5


def test_what_it_refuses(tmp_path, capsys):
    data, out = _run(tmp_path)
    with pytest.raises(SystemExit, match="no run folder"):
        example.main([str(tmp_path / "missing"), "--data", str(data)])
    example.main([str(out), "--data", str(data)])
    assert "(average): floor 0.0001; sigma min " in (printed := capsys.readouterr().out) and " of 300 scales" in printed
    vae = tmp_path / "vae"
    assert gvae_main(["train", "--data", str(data), "--latent", "2", "--hidden", "8", "--epochs", "1",
                      "--out", str(vae), "--quiet"]) == 0
    with pytest.raises(SystemExit, match="not classify"):
        example.main([str(vae), "--data", str(data)])

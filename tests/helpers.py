"""Data and runs the tests share: small generated images, written as the .npz files ``gvae --data`` reads."""
import threading
from pathlib import Path

import numpy as np


def make_data(n=300, d=36, seed=0):
    """Images of random bars: learnable structure in [0, 1]."""
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(d))

    def draw(m):
        img = np.zeros((m, side, side), np.float32)
        rows = rng.integers(0, side, m)
        cols = rng.integers(0, side, m)
        img[np.arange(m), rows, :] = 0.9
        img[np.arange(m), :, cols] = 0.9
        return img.reshape(m, d) + 0.05, rng.integers(0, 10, m)
    return {"train": draw(n), "valid": draw(100), "test": draw(100)}


def write_data(path, n=200, d=784, seed=0):
    """:func:`make_data` written to ``path`` in the .npz layout ``gvae --data`` reads (train_x, train_y,
    valid_x, ...); returns ``path``."""
    data = make_data(n=n, d=d, seed=seed)
    np.savez(path, **{f"{split}_{part}": data[split][i] for split in data for i, part in enumerate("xy")})
    return path


SMALL_SIZES = {"train": 30, "valid": 10, "test": 12}  # the splits of fake_splits


def fake_splits(sizes=SMALL_SIZES, seed=0):
    """MNIST-shaped splits {name: (x (n, 784) float32 in [0, 1), y (n,) int64)} of the given sizes."""
    rng = np.random.default_rng(seed)
    return {
        s: (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
            rng.integers(0, 10, n).astype(np.int64))
        for s, n in sizes.items()
    }


def assert_splits_equal(loaded, splits):
    """``loaded`` (as load_mnist returns it) holds exactly ``splits``, as C-contiguous float32 and int64."""
    for s in splits:
        x, y = loaded[s]
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == splits[s][0].shape
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, splits[s][0])
        np.testing.assert_array_equal(y, splits[s][1])


def trained_straight_and_resumed(tmp_path, flags):
    """``gvae train *flags`` on small labelled data (tmp_path/mnist.npz) for 3 epochs in one go, and for 1
    epoch then resumed to 3: asserts that both wrote the same metrics rows and checkpoint, and returns
    (rows, summary, checkpoint meta, data path) of the run."""
    import json

    from gvae.cli import main
    from gvae.io.files import read_jsonl
    from gvae.training import checkpoint
    data = tmp_path / "mnist.npz"
    splits = fake_splits({"train": 120, "valid": 40, "test": 40}, seed=2)
    np.savez(data, **{f"{s}_{part}": splits[s][i] for s in splits for i, part in enumerate("xy")})
    argv = ["train", *flags, "--data", str(data), "--quiet"]
    assert main([*argv, "--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert main([*argv, "--epochs", "1", "--out", str(tmp_path / "split")]) == 0
    assert main(["train", "--resume", "--out", str(tmp_path / "split"), "--data", str(data), "--epochs", "3",
                 "--quiet"]) == 0

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("seconds") and k != "resumed_with"} for r in rows]
    rows = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    assert strip(rows) == strip(read_jsonl(tmp_path / "split" / "metrics.jsonl")) and len(rows) == 3
    a, _ = checkpoint.load(tmp_path / "straight" / "checkpoint.npz")
    b, meta = checkpoint.load(tmp_path / "split" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    return rows, json.loads((tmp_path / "straight" / "summary.json").read_text()), meta, data


def assert_eval_refuses(run, data, capsys, phrase):
    """``gvae eval run`` exits 2 with one line on stderr that contains ``phrase`` (what the run holds)."""
    from gvae.cli import main
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and phrase in err, err


def assert_eval_estimates(run, data, capsys, phrase, samples=False):
    """``gvae eval run`` of a task with its own log-weights writes eval.json, its bounds finite and in order
    (L_1 <= L_5 <= L_K); ``gvae sample run`` refuses it in one line that contains ``phrase``, or with
    ``samples`` (a model that draws from its prior) writes its pictures, and ``gvae analyze`` refuses it."""
    import json

    from gvae.cli import main
    assert main(["eval", str(run), "--data", str(data), "--iw-samples", "20", "--quiet"]) == 0
    result = json.loads((run / "eval.json").read_text())
    bounds = [result["test_iwae_1"], result["test_iwae_5"], result["test_log_likelihood"]]
    assert np.all(np.isfinite(bounds + [result["test_elbo"]])) and bounds == sorted(bounds), result
    if samples:
        prefix = run.parent / f"{run.name}-drawn"
        assert main(["sample", str(run), "--n", "4", "--out", str(prefix), "--quiet"]) == 0
        assert all(Path(f"{prefix}_{kind}.png").stat().st_size > 0 for kind in ("means", "samples"))
    capsys.readouterr()
    assert main(["analyze", str(run), "--data", str(data)] if samples else ["sample", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and phrase in err and "gvae eval estimates its log p(x)" in err, err
    assert ("gvae sample draws from its prior" in err) == samples, err


class Passes:
    """A stand-in for gvae.evaluation.evaluate._log_weights_into (``real``) that counts the passes it is asked
    for (``count``) and raises KeyboardInterrupt at pass ``stop_at`` (None: never)."""

    def __init__(self, real, stop_at=None):
        self.real, self.stop_at, self.count = real, stop_at, 0
        self._lock = threading.Lock()  # batches side by side ask from two threads at once

    def __call__(self, *args):
        with self._lock:
            self.count += 1
            stop = self.count == self.stop_at
        if stop:
            raise KeyboardInterrupt
        return self.real(*args)


# One training step of examples/torch_banded_vae.py's VAE for each banded posterior, and its evaluation.
EXAMPLE_STEP = """\
import importlib.util, sys
import torch
spec = importlib.util.spec_from_file_location("torch_banded_vae", sys.argv[1])
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)
torch.manual_seed(0)
x = (torch.rand(8, 784) < 0.3).float()
for posterior in ("chain", "extgrid"):
    model = example.VAE(posterior, latent=16, hidden=(16,))
    example.train_step(model, torch.optim.Adam(model.parameters()), x)
    example.mean_elbo(model, x, 0)
"""

"""gvae.plots on tiny runs trained on generated 28 x 28 images: the right set of valid PNGs."""
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from gvae import plots  # noqa: E402
from gvae.training import TrainConfig, Trainer, load_model  # noqa: E402
from tests.test_train import make_data  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGES = {"curves.png", "reconstructions.png", "samples.png"}
STRUCTURED = {"cholesky_diagonals.png", "correlation.png"}


@pytest.fixture(scope="module")
def data():
    return make_data(n=200, d=784)


def train_run(path, data, posterior, latent):
    cfg = TrainConfig(latent=latent, hidden=(16,), epochs=2, batch_size=50, posterior=posterior)
    Trainer(cfg, data, path, quiet=True).fit()
    return path


def assert_pngs(paths, out_dir, expected):
    assert {p.name for p in paths} == expected
    assert sorted(p.name for p in out_dir.glob("*.png")) == sorted(expected)
    for p in paths:
        assert p.parent == out_dir
        blob = p.read_bytes()
        assert blob.startswith(PNG_SIGNATURE), p
        assert 1000 < len(blob) < 400_000, (p, len(blob))
        with Image.open(p) as image:
            image.verify()
    assert not list(out_dir.glob(".*tmp*")), "temporary files left behind"


@pytest.mark.parametrize("posterior, latent, expected", [
    ("chain", 2, IMAGES | {"manifold.png"} | STRUCTURED),
    ("diagonal", 3, IMAGES),
    ("rank1", 3, IMAGES | STRUCTURED),
])
def test_plot_run_writes_the_right_pictures(tmp_path, data, posterior, latent, expected):
    run = train_run(tmp_path / "run", data, posterior, latent)
    pyplot_before = "matplotlib.pyplot" in sys.modules
    paths = plots.plot_run(run, data, n_images=4)
    assert_pngs(paths, run, expected)
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules  # figures never go through pyplot's global state


def test_out_dir_and_non_square_images(tmp_path, capsys):
    data = make_data(n=100, d=36)
    for split in data:  # 36 -> 35 pixels: not a square image any more
        x, y = data[split]
        data[split] = (np.ascontiguousarray(x[:, :35]), y)
    run = train_run(tmp_path / "run", data, "chain", 2)
    out = tmp_path / "pictures"
    paths = plots.plot_run(run, data, out_dir=out)
    assert_pngs(paths, out, {"curves.png"} | STRUCTURED)
    assert "not a square number" in capsys.readouterr().err
    assert not list(run.glob("*.png"))


def test_cholesky_diagonals_match_the_dense_factor(tmp_path):
    # the band values shown are the diagonals of the Cholesky factor of the family's precision
    data = make_data(n=100, d=36)
    for posterior, latent in [("chain", 4), ("rank1", 4), ("extgrid", 9)]:
        run = train_run(tmp_path / posterior, data, posterior, latent)
        model, params, _ = load_model(run)
        q = model.encode(params, np.ascontiguousarray(data["test"][0][:2]))
        offsets, values = plots.cholesky_diagonals(model, q)
        chol = np.linalg.cholesky(model.family.precision(q))
        assert offsets[0] == 0 and len(values) == 2
        for b in range(2):
            for k, o in enumerate(offsets):
                np.testing.assert_allclose(values[b][k], np.diagonal(chol[b], offset=-o), rtol=1e-4, atol=1e-5)
        corr = plots.posterior_correlation(model, q)
        np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0, atol=1e-9)
        assert np.all(np.abs(corr) <= 1.0) and np.allclose(corr, np.swapaxes(corr, 1, 2))


def test_helpers():
    assert plots.image_side(784) == 28 and plots.image_side(35) is None and plots.image_side(1) == 1
    z, values = plots.manifold_grid(4)
    assert z.shape == (16, 2) and np.all(np.diff(values) > 0)
    np.testing.assert_allclose(values, -values[::-1])  # symmetric quantiles, 0 and 1 avoided
    assert np.all(np.isfinite(z))
    assert z[0, 0] == values[0] and z[0, 1] == values[-1]  # top-left: smallest z1, largest z2
    grid = plots.tile(np.zeros((3, 2, 2)), 2, 2, pad=1)
    assert grid.shape == (7, 7) and grid[1, 1] == 0 and grid[4, 4] == 1  # unused cell stays padding


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(RuntimeError, match=r"pip install 'gvae\[plot\]'"):
        plots._figure(1, 1)

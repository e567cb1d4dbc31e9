"""gvae.plots on tiny runs trained on generated 28 x 28 images: the right set of valid PNGs, and figures
that stay readable at any scale (markers for single points, integer epoch and unit ticks, legends beside
the data, titles broken between phrases)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import gvae.models  # noqa: E402,F401  (registers the literature models' tasks)
from gvae.evaluation.pictures import manifold_grid  # noqa: E402
from gvae.io.images import tile  # noqa: E402
from gvae.plots import canvas  # noqa: E402
from gvae.plots.analysis import plot_analysis, plot_unit_activity  # noqa: E402
from gvae.plots.curves import plot_curves, plot_sweep_curves  # noqa: E402
from gvae.plots.images import plot_image_grid  # noqa: E402
from gvae.plots.posterior import MAX_DIAGONALS  # noqa: E402
from gvae.plots.run import plot_run  # noqa: E402
from gvae.plots.titles import run_title  # noqa: E402
from gvae.training import TrainConfig, Trainer, load_model, open_run  # noqa: E402
from tests.helpers import make_data  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGES = {"curves.png", "reconstructions.png", "decoder_means.png"}
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
    pytest.param("rank1", 3, IMAGES | STRUCTURED, marks=pytest.mark.slow),
])
@pytest.mark.slow
def test_plot_run_writes_the_right_pictures(tmp_path, data, posterior, latent, expected):
    run = train_run(tmp_path / "run", data, posterior, latent)
    pyplot_before = "matplotlib.pyplot" in sys.modules
    paths = plot_run(open_run(run).with_test_set(data), n_images=4)
    assert_pngs(paths, run, expected)
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules  # figures never go through pyplot's global state


@pytest.mark.slow
def test_out_dir_and_non_square_images(tmp_path, capsys):
    data = make_data(n=100, d=36)
    for split in data:  # 36 -> 35 pixels: not a square image any more
        x, y = data[split]
        data[split] = (np.ascontiguousarray(x[:, :35]), y)
    run = train_run(tmp_path / "run", data, "chain", 2)
    out = tmp_path / "pictures"
    paths = plot_run(open_run(run).with_test_set(data), out_dir=out)
    assert_pngs(paths, out, {"curves.png"} | STRUCTURED)
    assert "not a square number" in capsys.readouterr().err
    assert not list(run.glob("*.png"))


def test_cholesky_diagonals_match_the_dense_factor(tmp_path):
    # the values shown are the diagonals of the Cholesky factor of the trained family's precision
    data = make_data(n=100, d=36)
    for posterior, latent in [("chain", 4), ("rank1", 4), ("extgrid", 9)]:
        run = train_run(tmp_path / posterior, data, posterior, latent)
        model, params, _ = load_model(run)
        q = model.encode(params, np.ascontiguousarray(data["test"][0][:2]))
        offsets, values, _ = model.layers[0].family.factor_diagonals(q, MAX_DIAGONALS)
        chol = np.linalg.cholesky(model.layers[0].family.precision(q))
        assert offsets[0] == 0 and len(values) == 2
        for b in range(2):
            for k, o in enumerate(offsets):
                np.testing.assert_allclose(values[b, k, o:], np.diagonal(chol[b], offset=-o), rtol=1e-4, atol=1e-5)
        corr = model.layers[0].family.correlation(q)
        np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0, atol=1e-9)
        assert np.all(np.abs(corr) <= 1.0) and np.allclose(corr, np.swapaxes(corr, 1, 2))


def test_helpers():
    assert canvas.image_side(784) == 28 and canvas.image_side(35) is None and canvas.image_side(1) == 1
    z, values = manifold_grid(4)
    assert z.shape == (16, 2) and np.all(np.diff(values) > 0)
    np.testing.assert_allclose(values, -values[::-1])  # symmetric quantiles, 0 and 1 avoided
    assert np.all(np.isfinite(z))
    assert z[0, 0] == values[0] and z[0, 1] == values[-1]  # top-left: smallest z1, largest z2
    grid = tile(np.zeros((3, 2, 2)), 2, 2, pad=1)
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
        canvas.new_figure(1, 1)


def test_one_probe_says_whether_pictures_can_be_drawn(monkeypatch, tmp_path):
    """canvas.available() is what gvae plot, gvae train's pictures and the sweep's curves ask."""
    import importlib.util
    from gvae import commands
    from gvae.sweep.table import write_curves
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert not canvas.available() and not commands._can_draw()
    with pytest.raises(RuntimeError, match=r"pip install 'gvae\[plot\]'"):
        plot_run(tmp_path)
    assert write_curves(tmp_path) is None


def test_plot_run_takes_an_opened_run(tmp_path):
    with pytest.raises(TypeError, match=r"plot_run\(gvae.training.runs.open_run\("):
        plot_run(tmp_path)


# --- what the figures look like ----------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    """{file name: Figure} of every picture drawn in the test (each still written as usual)."""
    figures = {}
    save = canvas.save

    def keep(fig, path):
        figures[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(canvas, "save", keep)
    return figures


def visible_ticks(ax, axis="x"):
    lo, hi = sorted(getattr(ax, f"get_{axis}lim")())
    return [t for t in getattr(ax, f"get_{axis}ticks")() if lo <= t <= hi]


def assert_legends_beside_the_axes(fig):
    """Every legend of fig exists outside every axes' box (so it covers no data)."""
    renderer = fig.canvas.get_renderer()
    found = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert found, "no legend drawn"
    for legend in found:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), (legend, ax)


def assert_single_points_marked(fig):
    """A line of one point is invisible unless it has a marker."""
    lines = [line for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert lines
    for line in lines:
        assert line.get_marker() not in (None, "", "None", " ") and line.get_markersize() >= 4, line


def sweep_curves(epochs, seeds=(0, 1)):
    rng = np.random.default_rng(0)
    e = list(range(1, epochs + 1))
    return {name: [(seed, e, list(-100 - 80 / np.array(e) - k + rng.normal(0, 0.2, epochs)), [1e-3] * epochs)
                   for seed in seeds] for k, name in enumerate(["diagonal", "chain", "extgrid"])}


def test_sweep_curves_after_one_epoch_show_every_run(tmp_path, drawn):
    plot_sweep_curves(sweep_curves(1), tmp_path / "curves.png", "sweep")
    fig = drawn["curves.png"]
    assert_single_points_marked(fig)
    (ax,) = fig.axes  # one epoch: no enlarged last half beside it
    lo, hi = ax.get_xlim()
    assert lo <= 0.5 and hi >= 1.5  # not 0.96-1.04
    assert visible_ticks(ax) == [1]
    assert_legends_beside_the_axes(fig)


@pytest.mark.slow
@pytest.mark.parametrize("epochs", [3, 17, 50])
def test_sweep_curves_show_whole_lines_on_integer_epochs(tmp_path, drawn, epochs):
    curves = sweep_curves(epochs)
    plot_sweep_curves(curves, tmp_path / "curves.png", "sweep")
    fig = drawn["curves.png"]
    assert len(fig.axes) == (1 if epochs < 10 else 2)
    for ax in fig.axes:
        ticks = visible_ticks(ax)
        assert ticks and all(float(t).is_integer() and 1 <= t <= epochs for t in ticks), ticks
    if epochs < 10:  # few epochs: every value within the axes, none cut off by the scaling
        lo, hi = fig.axes[0].get_ylim()
        values = [v for runs in curves.values() for _, _, vs, _ in runs for v in vs]
        assert lo < min(values) and max(values) < hi
    assert_legends_beside_the_axes(fig)


def write_metrics(run, epochs):
    run.mkdir()
    rows = [{"epoch": e, "train_elbo": -200.0 + 3 * e, "valid_elbo": -198.0 + 2.5 * e} for e in range(1, epochs + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.mark.parametrize("epochs", [1, 3, 23])
def test_run_curves_at_any_length(tmp_path, drawn, epochs):
    plot_curves(write_metrics(tmp_path / "run", epochs))
    fig = drawn["curves.png"]
    (ax,) = fig.axes
    ticks = visible_ticks(ax)
    assert ticks and all(float(t).is_integer() and 1 <= t <= epochs for t in ticks), ticks
    lo, hi = ax.get_xlim()
    assert lo <= 0.5 and hi >= epochs + 0.5
    if epochs == 1:
        assert_single_points_marked(fig)
        valid = next(line for line in ax.get_lines() if line.get_label() == "validation ELBO")
        star = next(line for line in ax.get_lines() if line.get_label().startswith("best"))
        assert star.get_zorder() < valid.get_zorder()  # the best epoch's star does not hide its point
    assert_legends_beside_the_axes(fig)


def test_unit_activity_ticks_and_legend(tmp_path, drawn):
    activity = [0.5] * 12 + [1e-4] * 4
    layer = {"layer": 0, "activity": activity, "activity_threshold": 0.01, "active_units": 12, "latent": 16,
             "posterior": "extgrid"}
    plot_unit_activity({"layers": [layer], "posterior": "extgrid", "latent": 16, "hidden": [32],
                              "run": str(tmp_path / "extgrid")}, tmp_path / "unit_activity.png")
    fig = drawn["unit_activity.png"]
    ax = fig.axes[0]
    ticks = visible_ticks(ax)
    assert all(float(t).is_integer() for t in ticks) and min(ticks) == 0 and max(ticks) <= 15, ticks
    assert_legends_beside_the_axes(fig)
    title = fig._suptitle.get_text()
    assert "extgrid: extgrid" not in title.replace("\n", " ")


@pytest.mark.slow
def test_the_elbo_surgery_of_a_hierarchy_is_drawn_alone(tmp_path, drawn):
    """A hierarchy has no gaps: its top layer's ELBO surgery goes to surgery.png, one bar of the mutual
    information with the marginal KL on top of it, and log N dashed."""
    surgery = {"n_points": 1000, "samples": 10, "log_n": 6.9, "mean_kl": 20.0, "mean_kl_sem": 0.3,
               "mutual_information": 6.5, "mutual_information_sem": 0.01, "marginal_kl": 13.5,
               "marginal_kl_sem": 0.3}
    layers = [{"layer": i, "activity": [0.5] * 4, "activity_threshold": 0.01, "active_units": 4, "latent": 4,
               "posterior": "chain", "surgery": surgery if i else None} for i in range(2)]
    paths = plot_analysis({"layers": layers, "gaps": None, "posterior": "chain", "latent": [4, 4]}, tmp_path)
    assert [p.name for p in paths] == ["surgery.png", "unit_activity.png"]
    (ax,) = drawn["surgery.png"].axes
    mutual, marginal = ax.patches
    assert (mutual.get_y(), mutual.get_height()) == (0.0, 6.5)
    assert (marginal.get_y(), marginal.get_height()) == (6.5, 13.5)
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [6.9]
    assert ax.get_ylim()[1] > 20.3 and ax.get_xticklabels()[0].get_text() == "z2 (chain)"  # the top layer, as z2


@pytest.mark.slow
def test_the_layers_are_named_as_the_docs_number_them(tmp_path, drawn):
    """z1, z2 from the bottom (the names of docs/reference/commands.md, gvae train's "stochastic layer 1, 2"), z for one
    layer: the pictures and gvae analyze's lines said "layer 0" and "layer 1", analysis.json's index."""
    from gvae.evaluation.analysis import describe_surgery
    layers = [{"layer": i, "activity": [0.5] * 4, "activity_threshold": 0.01, "active_units": 4, "latent": 4,
               "posterior": "chain", "surgery": None} for i in range(2)]
    plot_unit_activity({"layers": layers, "posterior": "chain", "latent": [4, 4]}, tmp_path / "unit_activity.png")
    assert [ax.get_xlabel() for ax in drawn["unit_activity.png"].axes] == [
        "latent unit of z1 (chain, d = 4)", "latent unit of z2 (chain, d = 4)"]
    plot_unit_activity({"layers": layers[:1], "posterior": "chain", "latent": 4}, tmp_path / "one.png")
    assert [ax.get_xlabel() for ax in drawn["one.png"].axes] == ["latent unit of z (chain, d = 4)"]
    surgery = {"n_points": 10, "log_n": 2.3, "mean_kl": 2.0, "mutual_information": 1.5, "mutual_information_sem": 0.1,
               "marginal_kl": 0.5, "marginal_kl_sem": 0.1}
    assert describe_surgery({**layers[1], "surgery": surgery}, 2).startswith("ELBO surgery of z2, 10 points: ")
    assert describe_surgery({**layers[0], "surgery": surgery}, 1).startswith("ELBO surgery, 10 points: ")


def test_titles_break_between_phrases_and_fit(tmp_path, drawn):
    title = "Decoder means for 64 z ~ N(0, I), d = 16 (best parameters)"
    subtitle = "extgrid16: extgrid posterior, bernoulli likelihood, latent 16, hidden 500 500"
    plot_image_grid(np.zeros((4, 784)), tmp_path / "grid.png", title, subtitle, cols=2)  # a narrow grid
    fig = drawn["grid.png"]
    text = fig.axes[0].get_title()
    lines = text.split("\n")
    assert len(lines) > 2, "the narrow figure's title should wrap"
    assert " ".join(lines) == f"{title} {subtitle}"  # nothing lost or changed
    for line in lines:
        if line not in (title, subtitle) and not subtitle.endswith(line) and not title.endswith(line):
            assert line[-1] in ",:;", f"a title line broken mid-phrase: {line!r}"
    assert "N(0, I)" in text and "hidden 500 500" in text
    renderer = fig.canvas.get_renderer()
    assert fig.axes[0].title.get_window_extent(renderer).width <= fig.bbox.width


def test_run_title_does_not_repeat_a_folder_named_after_its_model(tmp_path):
    config = {"posterior": "extgrid", "latent": 16, "hidden": [32]}
    assert run_title(config, tmp_path / "extgrid") == ("extgrid posterior, bernoulli likelihood, latent 16, "
                                                             "hidden 32")
    assert run_title(config, tmp_path / "ext50").startswith("ext50: extgrid posterior")


def test_the_prior_draws_title_names_each_models_draws():
    """gvae sample's titles: one layer of a kind, or the layers' ancestral order; the ladder's independent codes."""
    from gvae.models.binary.model import BinaryVAE
    from gvae.models.ladder.model import VLAE
    from gvae.models.sigmoid_belief.model import SigmoidBeliefDEF
    from gvae.plots.images import prior_draws_title
    cases = [(SigmoidBeliefDEF(4, (3,), (5,)), "binary draws z, d = 3"),
             (SigmoidBeliefDEF(4, (3, 2), (5,)), "ancestral binary draws z2 ... z1, d = 3-2"),
             (BinaryVAE(4, 3, (5,), autoregressive=True), "autoregressive binary draws z, d = 3"),
             (VLAE(4, [3, 2], [[5], [4]]), "z1 .. z2 ~ N(0, I) independently, d = 3-2")]
    for model, draws in cases:
        assert prior_draws_title(model, "Decoder means", 8, "best") == f"Decoder means for 8 {draws} (best parameters)"


def test_run_title_names_the_task_of_a_model_without_a_gaussian_posterior(tmp_path):
    """gvae sample's pictures of a DARN run: --posterior's default names nothing the model has."""
    config = {"task": "darn", "posterior": "diagonal", "latent": [500, 200], "hidden": [500, 500]}
    assert run_title(config, tmp_path / "darn", posterior=False) == ("task darn, bernoulli likelihood, latent "
                                                                    "500-200, hidden 500-500")


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory, data):
    return train_run(tmp_path_factory.mktemp("plots") / "chain", data, "chain", 2)


@pytest.mark.slow
def test_every_run_picture_has_its_subtitle_and_legends_beside_the_data(tmp_path, data, chain_run, drawn):
    plot_run(open_run(chain_run).with_test_set(data), out_dir=tmp_path, n_images=4)
    subtitle = run_title(json.loads((chain_run / "config.json").read_text()), chain_run)
    for name, fig in drawn.items():
        titles = [fig._suptitle.get_text()] if fig._suptitle is not None else [ax.get_title() for ax in fig.axes[:1]]
        assert subtitle.replace("\n", " ") in " ".join(titles).replace("\n", " "), name  # manifold.png too
        assert " ".join(titles).count("chain") == 1, (name, titles)  # the family named once
    assert {"manifold.png", "cholesky_diagonals.png", "decoder_means.png"} <= set(drawn)
    assert_legends_beside_the_axes(drawn["cholesky_diagonals.png"])
    assert_single_points_marked(drawn["cholesky_diagonals.png"])  # d = 2: L[1, 0] is one point
    for ax in drawn["cholesky_diagonals.png"].axes:
        if ax.get_xlabel() == "row i of L":
            assert visible_ticks(ax) == [0, 1]
            assert [line.get_label() for line in ax.get_lines()[:2]] == ["main diagonal L[i, i]",
                                                                        "L[i, i-1]: previous unit"]


def test_an_opened_run_without_its_test_images_is_refused_by_name(chain_run):
    with pytest.raises(ValueError, match=r"with_test_set"):
        plot_run(open_run(chain_run))


def test_an_opened_run_carries_the_test_set_every_command_evaluates(chain_run, data):
    """open_run is how eval, sample, plot, analyze and gvae.load open a run: the same parameters as
    load_model, and with_test_set the test split as fixed_eval_sets prepares it, cut to ``limit``."""
    from gvae.training.batching import fixed_eval_sets
    run = open_run(chain_run, "last")
    model, params, _ = load_model(chain_run, "last")
    assert run.which == "last" and run.device == "cpu" and run.test_x is None
    for name in params:
        np.testing.assert_array_equal(run.params[name], params[name])
    some = run.with_test_set(data, limit=7)
    np.testing.assert_array_equal(some.test_x, fixed_eval_sets(data, model)[1][:7])
    np.testing.assert_array_equal(some.test_y, data["test"][1][:7])
    assert run.test_x is None  # with_test_set gives a new OpenRun


def test_the_pictures_only_draw():
    """gvae.plots calls no model and reads no device: its modules import, of the rest of gvae, the files and
    images of gvae.io, the run titles' layer widths and gvae.evaluation.pictures, which computes what a run's
    pictures show."""
    import ast
    import gvae.plots
    imported = set()
    for path in Path(gvae.plots.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                imported.add(node.module)
            assert not (isinstance(node, ast.Import) and any(a.name.startswith("gvae") for a in node.names)), path
    assert imported == {"io.files", "io.images", "evaluation", "model.vae"}


def test_what_a_run_shows_comes_to_the_host_as_numpy_arrays(chain_run, data):
    from gvae.evaluation import pictures
    run = open_run(chain_run).with_test_set(data)
    model, params, x = run.model, run.params, run.test_x[:3]
    recon = pictures.reconstructions(model, params, x)
    means, values = pictures.manifold_means(model, params, 5)
    prior = pictures.prior_means(model, params, 6, seed=2)
    for a, shape in [(recon, (3, 784)), (means, (25, 784)), (prior, (6, 784))]:
        assert type(a) is np.ndarray and a.dtype == np.float64 and a.shape == shape
        assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(values, manifold_grid(5)[1])
    np.testing.assert_array_equal(prior, pictures.prior_means(model, params, 6, seed=2))  # the seed's z
    offsets, diagonals, free = pictures.factor_diagonals(model, params, x, MAX_DIAGONALS)
    assert offsets == (0, 1) and diagonals.shape == (3, 2, 2) and free.shape == (2, 2)
    corr = pictures.correlations(model, params, x)
    assert corr.shape == (3, 2, 2) and np.allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0)
    wide = train_run(chain_run.parent / "wide", data, "chain", 3)
    wide_run = open_run(wide)
    with pytest.raises(ValueError, match="needs one 2-d stochastic layer, this model has 3"):
        pictures.manifold_means(wide_run.model, wide_run.params, 5)

"""Pictures of a trained run: learning curves, reconstructions, samples, the 2-d latent manifold and,
for structured posteriors, the Cholesky factor of the precision and the posterior correlations; and
those of ``gvae analyze``: the inference gaps and the activity of the latent units.

matplotlib is an optional extra (``pip install 'gvae[plot]'``) imported only when a picture is drawn.
Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas, so no pyplot state is
touched, and every PNG is written atomically with :func:`gvae.files.atomic_path`.

This module only draws. A run folder is read by :func:`gvae.training.runs.open_run` (model, parameters
on their device, configuration, prepared test images) and drawn whole by :func:`plot_run`; what a
picture shows of a posterior it asks the family (``structured``, ``factor_diagonals``, ``diagonal_label``,
``correlation`` of :class:`gvae.model.posteriors.Family`). A picture's numbers are computed on the
device of the parameters and read to the host once, to be drawn. Each picture also has its own function
taking a model, its parameters and an output path:

=========================  ======================================================================
``curves.png``             train and validation ELBO per epoch (:func:`plot_curves`)
``reconstructions.png``    test images and decoder means at the posterior mean
                           (:func:`plot_reconstructions`)
``decoder_means.png``      decoder means for z ~ N(0, I) (:func:`plot_samples`): the picture of that
                           name that ``gvae sample`` writes, the same z for the same seed
``manifold.png``           latent dimension 2 only: decoder means over a grid of Gaussian quantiles
                           (:func:`plot_manifold`)
``cholesky_diagonals.png`` structured posteriors only: the diagonals of the Cholesky factor L of
                           the precision P = L L^T for a few test points
                           (:func:`plot_cholesky_diagonals`)
``correlation.png``        structured posteriors only: the posterior correlation matrices of those
                           test points (:func:`plot_correlation`)
=========================  ======================================================================

``gvae analyze`` draws two more from its ``analysis.json`` (:func:`plot_analysis`, docs/analysis.md):
``gaps.png`` (the inference gaps and the ELBO surgery beside them, :func:`plot_gaps`; a hierarchy, which
has no gaps, gets ``surgery.png`` for a layer with an ELBO surgery, :func:`plot_surgery`) and
``unit_activity.png`` (the activity of each latent unit, :func:`plot_unit_activity`). ``gvae table``
draws a sweep's validation curves (:func:`plot_sweep_curves`, docs/sweeps.md).
"""
import dataclasses
import importlib.util
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np

from .io.files import atomic_path, read_json, read_jsonl
from .io.images import tile
from .kernels import device_of, to_device, to_host

DPI = 100
MAX_DIAGONALS = 6  # lines in the Cholesky picture for families with many diagonals (full, rank1)
MISSING = "gvae plot needs matplotlib: pip install 'gvae[plot]'"


def available():
    """Whether matplotlib (the optional extra ``gvae[plot]``) is installed to draw with."""
    return importlib.util.find_spec("matplotlib") is not None


def require():
    """Raise RuntimeError saying what to install when matplotlib is not there."""
    if not available():
        raise RuntimeError(MISSING)


def _figure(width, height, layout=None):
    """A new Figure on its own Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError(MISSING) from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _phrases(line):
    """``line`` split after each comma, colon or semicolon followed by a space outside brackets: "z ~ N(0, I),
    d = 16" -> ["z ~ N(0, I),", "d = 16"]."""
    phrases, depth, start = [], 0, 0
    for i, c in enumerate(line):
        depth += (c in "([{") - (c in ")]}")
        if c in ",:;" and depth == 0 and line[i + 1:i + 2] == " ":
            phrases.append(line[start:i + 1])
            start = i + 2
    return phrases + [line[start:]]


def _wrap(title, width_inches, fontsize):
    """``title`` broken into lines that fit a figure ``width_inches`` wide (about 0.55 em per character),
    between its phrases (:func:`_phrases`), so that "hidden 500 500" or "N(0, I)" is never split; only a
    phrase longer than a line is broken between its words."""
    chars = max(20, int(width_inches * 72 / (0.55 * fontsize)))
    lines = []
    for line in title.split("\n"):
        current = ""
        for phrase in _phrases(line):
            if current and len(current) + 1 + len(phrase) > chars:
                lines.append(current)
                current = ""
            current = f"{current} {phrase}" if current else phrase
            if len(current) > chars:  # one phrase wider than the figure: break it between words
                *full, current = textwrap.wrap(current, chars)
                lines.extend(full)
        lines.append(current)
    return "\n".join(lines)


def _image_figure(img, zoom, title, left=0.25, right=0.25, bottom=0.25, top=0.3, least_width=5.0):
    """A figure showing the 2-d array img in [0, 1] at exactly ``zoom`` screen pixels per image pixel
    (crisp, no resampling), with margins given in inches (the top one grows with the title's lines), and
    at least ``least_width`` inches wide (a small grid is centred), so its title's phrases fit on a line.
    Returns (fig, ax)."""
    h, w = img.shape
    aw, ah = w * zoom / DPI, h * zoom / DPI
    widen = max(0.0, least_width - (aw + left + right)) / 2
    left, right = left + widen, right + widen
    fw = aw + left + right
    title = _wrap(title, fw, 11)
    fh = ah + bottom + top + 0.2 * (title.count("\n") + 1)
    fig = _figure(fw, fh)
    ax = fig.add_axes([left / fw, bottom / fh, aw / fw, ah / fh])
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    return fig, ax


def _save(fig, path):
    """Render fig and write it as a PNG, atomically: 8-bit grayscale when the picture has no colour,
    a lossless 256-colour palette when it has few colours, RGB otherwise (keeps files small)."""
    from PIL import Image  # a dependency of matplotlib

    path = Path(path)
    fig.canvas.draw()
    rgb = np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        image = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))  # 8-bit grayscale
    else:
        image = Image.fromarray(rgb)  # RGB
        if image.getcolors(256) is not None:
            image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", optimize=True, dpi=(DPI, DPI))
    return path


def image_side(n):
    """The side of a square image of n pixels, or None if n is not a perfect square."""
    side = math.isqrt(int(n))
    return side if side * side == n and side > 0 else None


def _side_or_raise(n):
    side = image_side(n)
    if side is None:
        raise ValueError(f"cannot draw images of {n} pixels: {n} is not a square number")
    return side


def _device(params):
    """The device the parameters (name -> array) live on: a picture's numbers are computed there, and only
    what it shows is read back."""
    return device_of(*params.values())


def _on_device(model, params, a):
    """The host array ``a`` (images or latent points) in the model's dtype, on the device of ``params``."""
    return to_device(np.ascontiguousarray(a, dtype=model.dtype), _device(params))


def decoder_means(model, params, z):
    """The likelihood's mean of x for latent points z (N, d) on the device of ``params``, as float64
    (N, n) on the host."""
    return to_host(model.likelihood.mean(model.decode(params, z), params)).astype(np.float64)


def _gray(ax, img, title=None):
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def run_title(config, run_dir=None):
    """One line naming the run folder, its posterior, likelihood and network: the second line of every
    picture's title, so a picture read on its own says what it shows."""
    if not config:
        return "" if run_dir is None else Path(run_dir).name
    config = config if isinstance(config, dict) else dataclasses.asdict(config)
    from .model.vae import layer_widths  # here, as plot_samples imports training: gvae.plots loads no model
    hidden = " / ".join("-".join(map(str, h)) for h in layer_widths(config.get("hidden", ())))
    text = (f"{_words(config.get('posterior', '?'), ' ')} posterior, {config.get('likelihood', 'bernoulli')} "
            f"likelihood, latent {_words(config.get('latent', '?'), '-')}, hidden {hidden}")
    name = "" if run_dir is None else Path(run_dir).resolve().name
    # A folder named after its model ("extgrid") would only repeat a word of the line: left out then.
    if not name or name.lower() in re.findall(r"[\w.-]+", text.lower()):
        return text
    return f"{name}: {text}"


def _words(value, sep):
    """A config value that is one item or a list of them (one per stochastic layer), as text."""
    return sep.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _titled(title, subtitle):
    return title if not subtitle else f"{title}\n{subtitle}"


def _read_json(path):
    path = Path(path)
    return read_json(path) if path.exists() else None


def _marker_size(points, most=60):
    """Marker size for a line of ``points`` points: large enough that one point alone is seen (a line
    needs two), smaller as they crowd, none beyond ``most`` (the line shows them)."""
    return 0 if points > most else 6 if points <= 12 else 3


def _integer_axis(ax, first, last, axis="x"):
    """Limit ``ax``'s x (or y) axis to the integers first..last with half a step of margin (a few
    percent for long ranges), ticked at integers only: an epoch or a unit index has no fractions, and
    no tick falls outside the range."""
    from matplotlib.ticker import MaxNLocator
    pad = max(0.5, 0.02 * (last - first))
    getattr(ax, f"set_{axis}lim")(first - pad, last + pad)
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))


# --- the pictures ------------------------------------------------------------------------------------

def plot_curves(run_dir, path=None):
    """``curves.png``: train and validation ELBO per epoch from ``run_dir/metrics.jsonl``.

    The best validation epoch (from ``summary.json`` if there is one) is marked. Returns the path."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if not rows:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} holds no epochs to plot")
    config = _read_json(run_dir / "config.json")
    summary = _read_json(run_dir / "summary.json")
    epochs = [r["epoch"] for r in rows]
    fig = _figure(6.4, 4.8, layout="constrained")
    ax = fig.add_subplot()
    ms = _marker_size(len(rows))
    ax.plot(epochs, [r["train_elbo"] for r in rows], "o-", ms=ms, label="train ELBO (epoch average)")
    if any(abs(r.get("train_bound", r["train_elbo"]) - r["train_elbo"]) > 0.01 for r in rows):
        ax.plot(epochs, [r["train_bound"] for r in rows], "o--", ms=ms, label="train bound (optimised)")
    ax.plot(epochs, [r["valid_elbo"] for r in rows], "s-", ms=ms, label="validation ELBO")
    best = summary.get("best_epoch") if summary else None
    if best is None:
        best = max(rows, key=lambda r: r["valid_elbo"])["epoch"]
    best_row = next((r for r in rows if r["epoch"] == best), None)
    if best_row is not None:  # a star behind the validation point, which stays visible on it
        ax.plot([best], [best_row["valid_elbo"]], "*", ms=16, color="C3", zorder=1.9,
                label=f"best validation (epoch {best}: {best_row['valid_elbo']:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per image)")
    _integer_axis(ax, min(epochs), max(epochs))
    # The first epoch starts from the untrained model, often hundreds of nats below the rest: scale the
    # axis to the later epochs and say where the first one went, rather than flatten every later change.
    later = [v for r in rows[1:] for v in (r["train_elbo"], r["valid_elbo"]) if v is not None and np.isfinite(v)]
    first = [v for v in (rows[0]["train_elbo"], rows[0]["valid_elbo"]) if v is not None and np.isfinite(v)]
    if len(rows) >= 3 and later and first:
        lo, hi = min(later), max(later)
        pad = 0.15 * (hi - lo) or 1.0
        if min(first) < lo - 3 * (hi - lo + pad):
            ax.set_ylim(lo - pad, hi + pad)
            ax.annotate(f"epoch 1 below the axis ({min(first):.1f})", xy=(epochs[0], lo - pad), xytext=(0, 8),
                        textcoords="offset points", fontsize=8, color="0.3")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=9)  # below the axes, never on a curve
    ax.set_title(_wrap(_titled("Learning curves", run_title(config, run_dir)), 6.4, 11), fontsize=11)
    return _save(fig, path if path is not None else run_dir / "curves.png")


def plot_reconstructions(model, params, x, path, n_images=16, labels=None, subtitle=None):
    """``reconstructions.png``: the first ``n_images`` rows of x (top) and the decoder means of their
    reconstructions through the posterior mean, z = mu(x) (bottom). Returns the path."""
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    x = np.ascontiguousarray(x[:n_images], dtype=model.dtype)
    side = _side_or_raise(x.shape[1])
    recon = decoder_means(model, params, model.encode(params, _on_device(model, params, x)).mu)
    n = len(x)
    pad = 2
    grid = tile(np.concatenate([x, recon]).reshape(2 * n, side, side), 2, n, pad=pad)
    zoom = 2 if side <= 32 else 1
    fig, ax = _image_figure(grid, zoom, _titled("Reconstructions: decoder mean at z = posterior mean", subtitle),
                            left=1.25, bottom=0.5 if labels is not None else 0.2)
    centre = [pad + k * (side + pad) + (side - 1) / 2 for k in range(max(n, 2))]
    ax.set_yticks(centre[:2], ["test image", "reconstruction"])
    if labels is not None:
        ax.set_xticks(centre[:n], [str(int(v)) for v in np.asarray(labels)[:n]], fontsize=9)
        ax.set_xlabel("digit label")
    ax.tick_params(length=0)
    return _save(fig, path)


def prior_draws_title(model, what, n, which):
    """The title of a grid of ``what`` ("decoder means") for n prior draws of the ``which`` parameters."""
    if len(model.layers) == 1:
        draws = f"z ~ N(0, I), d = {model.sizes[0]}"
    else:
        draws = f"ancestral draws z{len(model.layers)} ~ N(0, I) ... z1, d = " + "-".join(map(str, model.sizes))
    return f"{what} for {n} {draws} ({which} parameters)"


def plot_samples(model, params, path, n=64, seed=0, subtitle=None, which="best"):
    """``decoder_means.png``: the decoder means for n draws z ~ N(0, I) from ``seed`` (a hierarchy:
    ancestral draws from the top layer down), the picture ``gvae sample`` writes under that name for the
    same seed (``which``: the parameters' name for the title). Returns the path."""
    from .training.runs import prior_draws
    out, _ = prior_draws(model, params, n, seed, _device(params))
    means = to_host(model.likelihood.mean(out, params)).astype(np.float64)
    return plot_image_grid(means, path, prior_draws_title(model, "Decoder means", n, which), subtitle)


def plot_image_grid(images, path, title, subtitle=None, cols=None):
    """Square images (N, n) in [0, 1] as one titled grid (``cols`` per row, default about sqrt(N)).
    Returns the path."""
    images = np.clip(np.asarray(images, dtype=np.float64), 0, 1)
    side = _side_or_raise(images.shape[1])
    grid = tile(images.reshape(-1, side, side), cols=cols, pad=2)
    fig, _ = _image_figure(grid, 2 if side <= 32 else 1, _titled(title, subtitle), left=0.4, right=0.4)
    return _save(fig, path)


def manifold_grid(n):
    """The n x n latent points of the manifold picture: the midpoints (k + 1/2) / n of a regular grid
    on the unit square mapped through the inverse Gaussian CDF. Returns (z (n * n, 2), values (n,))
    with z row by row: z_1 rises left to right, z_2 falls top to bottom (so up is larger z_2)."""
    from scipy.special import ndtri
    values = ndtri((np.arange(n) + 0.5) / n)
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1), values


def plot_manifold(model, params, path, n=20, subtitle=None):
    """``manifold.png`` (latent dimension 2): decoder means at n x n Gaussian quantiles of the latent
    space, tiled into one image (the learned-manifold picture of Kingma and Welling). Returns the path."""
    if model.sizes != (2,):
        raise ValueError(f"the manifold picture needs one 2-d stochastic layer, this model has "
                         f"{'-'.join(map(str, model.sizes))}")
    z, values = manifold_grid(n)
    means = decoder_means(model, params, _on_device(model, params, z))
    side = _side_or_raise(means.shape[1])
    img = tile(means.reshape(-1, side, side), n, n, pad=0)
    zoom = 1 if n * side >= 400 else 2
    fig, ax = _image_figure(img, zoom, _titled(f"Learned manifold: decoder means at {n} x {n} Gaussian quantiles "
                                               "of z", subtitle), left=0.75, right=0.35, bottom=0.65)
    step = max(1, n // 5)
    ticks = list(range(0, n, step)) + ([n - 1] if (n - 1) % step else [])
    centres = [k * side + (side - 1) / 2 for k in ticks]
    ax.set_xticks(centres, [f"{values[k]:.2f}" for k in ticks], fontsize=9)
    ax.set_yticks(centres, [f"{values[::-1][k]:.2f}" for k in ticks], fontsize=9)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return _save(fig, path)


def _point_axes(fig, x, labels, main_width):
    """One panel per row of x, each with a thumbnail of the input image on its left (when the data are
    square images) and a title naming the test image. Returns the main axes."""
    n = len(x)
    side = image_side(x.shape[1])
    thumb = 0.9 if side is not None else 0.0
    ratios = [thumb, main_width] * n if side is not None else [main_width] * n
    grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios)
    axes = []
    for b in range(n):
        if side is not None:
            t = fig.add_subplot(grid[0, 2 * b])
            _gray(t, np.asarray(x[b], dtype=np.float64).reshape(side, side))
            t.set_xlabel("input", fontsize=8)
            ax = fig.add_subplot(grid[0, 2 * b + 1])
        else:
            ax = fig.add_subplot(grid[0, b])
        title = f"test image {b}" + ("" if labels is None else f" (digit {int(labels[b])})")
        ax.set_title(title, fontsize=10)
        axes.append(ax)
    return axes


def plot_cholesky_diagonals(model, params, x, path, labels=None, subtitle=None):
    """``cholesky_diagonals.png``: for each row of x (a few test images), the entries of the Cholesky
    factor L of the posterior precision P = L L^T along each stencil diagonal (one line per diagonal,
    plotted against the row index i of L[i, i - offset]; entries the stencil keeps at zero, such as
    lattice links that would wrap around a row, are left out): the family's ``factor_diagonals``, at
    most MAX_DIAGONALS of them. Returns the path."""
    x = np.ascontiguousarray(x, dtype=model.dtype)
    family, d = model.layers[0].family, model.sizes[0]
    offsets, values, free = family.factor_diagonals(model.encode(params, _on_device(model, params, x)),
                                                    MAX_DIAGONALS)
    fig = _figure(4.9 * len(x) + 0.3, 3.9, layout="constrained")
    axes = _point_axes(fig, x, labels, 4.0)
    for b, ax in enumerate(axes):
        for k, o in enumerate(offsets):
            shown = np.where(free[k, o:], values[b, k, o:], np.nan)  # gaps where the stencil has no link
            ax.plot(np.arange(o, d), shown, "o-", ms=_marker_size(d), lw=1.2, label=family.diagonal_label(o, d))
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("row i of L")
        ax.grid(alpha=0.3)
        _integer_axis(ax, 0, d - 1)
    axes[0].set_ylabel("entry of L")
    # One legend for every panel, below them: inside a panel it would hide a diagonal's values.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(offsets), fontsize=8)
    how = "its stencil diagonals" if family.banded else "first diagonals of the dense Cholesky factor"
    fig.suptitle(_titled(f"Cholesky factor L of the posterior precision P = L L$^T$: {how}"
                         + _family_words(model, subtitle), subtitle), fontsize=11)
    return _save(fig, path)


def _family_words(model, subtitle):
    """" (family, d = ...)" for a title that has no run line (``subtitle``) saying so already, else ""."""
    return "" if subtitle else f" ({model.layers[0].family.name}, d = {model.sizes[0]})"


def plot_correlation(model, params, x, path, labels=None, subtitle=None):
    """``correlation.png``: the posterior correlation matrix of z for each row of x (the family's
    ``correlation``), as heatmaps on one diverging colour scale over [-1, 1]. Returns the path."""
    x = np.ascontiguousarray(x, dtype=model.dtype)
    corr = model.layers[0].family.correlation(model.encode(params, _on_device(model, params, x)))
    d = corr.shape[-1]
    fig = _figure(4.1 * len(x) + 1.0, 3.7, layout="constrained")
    axes = _point_axes(fig, x, labels, 3.0)
    im = None
    for b, ax in enumerate(axes):
        im = ax.imshow(corr[b], cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        ticks = list(range(0, d, 1 if d <= 10 else max(2, d // 8)))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("latent unit j")
        ax.set_ylabel("latent unit i")
    fig.colorbar(im, ax=axes, shrink=0.9, label="corr($z_i$, $z_j$ | x)")
    fig.suptitle(_titled("Posterior correlation matrices" + _family_words(model, subtitle), subtitle), fontsize=11)
    return _save(fig, path)


# --- everything for a run ----------------------------------------------------------------------------

def plot_run(run, out_dir=None, n_images=16, seed=0, n_points=3):
    """Write the pictures of a run opened with :func:`gvae.training.runs.open_run` and its test images
    (``.with_test_set(data)``) into ``out_dir``
    (default: the run folder).

    ``n_images`` of its test images are reconstructed, ``seed`` draws the z of ``decoder_means.png``
    (those of ``gvae sample --seed``), the first ``n_points`` test images are shown in the
    structured-posterior pictures. Image pictures are skipped, with a message on stderr, when the data
    are not square images. Returns the list of written paths."""
    require()
    if isinstance(run, (str, Path)):
        raise TypeError("plot_run takes an opened run with its test images: "
                        f"plot_run(gvae.training.runs.open_run({str(run)!r}).with_test_set(data))")
    if run.test_x is None:
        raise ValueError("plot_run needs the run's test images: pass open_run(...).with_test_set(data)")
    model, params, test_x, test_y = run.model, run.params, run.test_x, run.test_y
    out_dir = run.run_dir if out_dir is None else Path(out_dir)
    subtitle = run_title(run.config, run.run_dir)
    written = [plot_curves(run.run_dir, out_dir / "curves.png")]
    side = image_side(test_x.shape[1])
    if side is None:
        print(f"gvae plot: skipping reconstructions.png, decoder_means.png and manifold.png: the data have "
              f"{test_x.shape[1]} pixels, not a square number, so they are not drawn as images",
              file=sys.stderr)
    else:
        written.append(plot_reconstructions(model, params, test_x, out_dir / "reconstructions.png",
                                            n_images=n_images, labels=test_y, subtitle=subtitle))
        written.append(plot_samples(model, params, out_dir / "decoder_means.png", seed=seed, subtitle=subtitle,
                                    which=run.which))
        if model.sizes == (2,):
            written.append(plot_manifold(model, params, out_dir / "manifold.png", subtitle=subtitle))
    if model.layers[0].family.structured:
        pts = test_x[:n_points]
        labels = None if test_y is None else test_y[:n_points]
        written.append(plot_cholesky_diagonals(model, params, pts, out_dir / "cholesky_diagonals.png", labels,
                                               subtitle))
        written.append(plot_correlation(model, params, pts, out_dir / "correlation.png", labels, subtitle))
    return written


# --- gvae analyze ------------------------------------------------------------------------------------

def analysis_title(result):
    """The second title line of the analysis pictures: the run and its model, from ``analysis.json``."""
    return run_title({k: result[k] for k in ("posterior", "likelihood", "latent", "hidden") if k in result},
                     result.get("run"))


def _surgeries(result):
    """The layers of an ``analysis.json`` dict that have an ELBO surgery."""
    return [layer for layer in result["layers"] if layer.get("surgery")]


def _layer_name(layer, n_layers):
    """An ``analysis.json`` layer's name as the README writes it: z for a model's one stochastic layer, else
    z1, z2, ... from the bottom (the file's ``layer`` counts from 0)."""
    return "z" if n_layers == 1 else f"z{layer['layer'] + 1}"


def _draw_surgery(ax, layer, n_layers):
    """One stacked bar of a layer's ELBO surgery (of a model with ``n_layers`` stochastic layers): its mean
    KL term split into the mutual information (with its bound log N dashed) and the marginal KL, bars of
    one standard error."""
    s = layer["surgery"]
    mutual, marginal = s["mutual_information"], s["marginal_kl"]
    ax.bar([0], [mutual], 0.6, yerr=s["mutual_information_sem"], capsize=4, color="C2",
           label=f"mutual information I(n, z) {mutual:.2f}")
    ax.bar([0], [marginal], 0.6, bottom=[mutual], yerr=s["marginal_kl_sem"], capsize=4, color="C4",
           label=f"marginal KL(q(z) || p(z)) {marginal:.2f}")
    ax.axhline(s["log_n"], color="C2", lw=1, ls="--", label=f"log N = {s['log_n']:.2f}")
    name = f"{_layer_name(layer, n_layers)} ({layer['posterior']})" if n_layers > 1 else layer["posterior"]
    ax.set_xticks([0], [name])
    ax.set_xlim(-0.8, 0.8)
    top = max(mutual + marginal + (s["marginal_kl_sem"] or 0.0), s["log_n"], 1e-3)
    ax.set_ylim(min(0.0, mutual, mutual + marginal) * 1.1, top * 1.45)  # room for the legend
    ax.set_ylabel("nats per image")
    ax.set_title(f"ELBO surgery: mean KL {s['mean_kl']:.2f}, {s['n_points']} points", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)


def plot_gaps(result, path):
    """``gaps.png`` from an ``analysis.json`` dict: the inference gap split into the approximation and the
    amortisation gap (means over the points, bars of one standard error), each point's two gaps, the
    refinement's mean held-out ELBO per check and, where the layer has one, its ELBO surgery. Returns the
    path."""
    gaps = result["gaps"]
    surgeries = _surgeries(result)
    fig = _figure(13.0 + 3.5 * len(surgeries), 4.4, layout="constrained")
    bars, points, trace, *more = fig.subplots(1, 3 + len(surgeries),
                                              width_ratios=[0.8, 1.0, 1.2] + [0.9] * len(surgeries))
    for ax, layer in zip(more, surgeries):
        _draw_surgery(ax, layer, len(result["layers"]))
    approx, amort = gaps["approximation_gap"], gaps["amortisation_gap"]
    bars.bar([0], [approx], 0.6, yerr=gaps["approximation_gap_sem"], capsize=4, color="C0",
             label=f"approximation gap {approx:.2f}")
    bars.bar([0], [amort], 0.6, bottom=[approx], yerr=gaps["amortisation_gap_sem"], capsize=4, color="C1",
             label=f"amortisation gap {amort:.2f}")
    bars.set_xticks([0], [f"{result.get('posterior', '?')}"])
    bars.set_xlim(-0.8, 0.8)
    top = approx + amort + (gaps["amortisation_gap_sem"] or 0.0)
    bars.set_ylim(min(0.0, approx, approx + amort) * 1.1, max(top, approx, 1e-3) * 1.45)  # room for the legend
    bars.set_ylabel("nats per image")
    bars.set_title(f"inference gap {gaps['inference_gap']:.2f}", fontsize=10)
    bars.legend(fontsize=8, loc="upper left")
    bars.grid(axis="y", alpha=0.3)
    per = gaps["per_point"]
    points.scatter(per["approximation_gap"], per["amortisation_gap"], s=12, alpha=0.7)
    points.axhline(0.0, color="0.6", lw=0.8)
    points.axvline(0.0, color="0.6", lw=0.8)
    points.set_xlabel("approximation gap: log p(x) - ELBO(q*)")
    points.set_ylabel("amortisation gap: ELBO(q*) - ELBO(q)")
    points.set_title(f"each of the {gaps['points']} test images", fontsize=10)
    points.grid(alpha=0.3)
    for b, rows in enumerate(gaps["refinement"]["trace"]):
        rows = np.asarray(rows, dtype=np.float64)
        trace.plot(rows[:, 0], rows[:, 1], "o-", ms=3, label=f"batch {b + 1}" if b < 8 else None)
    trace.set_xlabel("Adam step")
    trace.set_ylabel("mean held-out ELBO (nats)")
    trace.set_title("refinement of q(z|x) with the decoder fixed", fontsize=10)
    trace.grid(alpha=0.3)
    if len(gaps["refinement"]["trace"]) > 1:
        trace.legend(fontsize=8, loc="lower right")
    fig.suptitle(_titled(f"Inference gaps (Cremer et al.): log p(x) {gaps['log_likelihood']:.2f}, ELBO(q*) "
                         f"{gaps['elbo_refined']:.2f}, ELBO(q) {gaps['elbo_amortised']:.2f} nats",
                         analysis_title(result)), fontsize=11)
    return _save(fig, path)


def plot_unit_activity(result, path):
    """``unit_activity.png`` from an ``analysis.json`` dict: the activity Cov_x(E_q[z_i]) of each latent
    unit of each stochastic layer on a log scale, with the threshold of the active units. Returns the path."""
    layers = result["layers"]
    width = max(8.0, 0.25 * max(len(layer["activity"]) for layer in layers) + 3.5)  # 1.5 in: the legends
    fig = _figure(width, 3.2 * len(layers) + 0.9, layout="constrained")
    for ax, layer in zip(np.atleast_1d(fig.subplots(len(layers), 1)), layers):
        activity = np.asarray(layer["activity"], dtype=np.float64)
        threshold = layer["activity_threshold"]
        active = activity > threshold
        shown = np.maximum(activity, 1e-12)  # a dead unit's variance can be 0: keep it on the log axis
        for chosen, colour, label in ((active, "C0", "active"), (~active, "0.6", "inactive")):
            if chosen.any():
                ax.bar(np.flatnonzero(chosen), shown[chosen], color=colour, label=label)
        ax.axhline(threshold, color="C3", lw=1, ls="--", label=f"threshold {threshold:g}")
        ax.set_ylim(min(shown.min(), threshold) / 3, max(shown.max(), threshold) * 3)
        _integer_axis(ax, 0, len(activity) - 1)
        ax.set_yscale("log")
        ax.set_xlabel(f"latent unit of {_layer_name(layer, len(layers))} ({layer['posterior']}, d = {layer['latent']})")
        ax.set_ylabel("Cov$_x$(E$_q$[$z_i$])")
        ax.set_title(f"{layer['active_units']} of {layer['latent']} units active", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the bars
    fig.suptitle(_wrap(_titled("Active units (Burda et al.): variance over the test images of each posterior mean",
                               analysis_title(result)), width, 11), fontsize=11)
    return _save(fig, path)


def plot_surgery(result, path):
    """``surgery.png`` from an ``analysis.json`` dict without gaps (a hierarchy): the ELBO surgery of each
    layer that has one (:func:`plot_gaps` draws it beside the gaps otherwise). Returns the path."""
    surgeries = _surgeries(result)
    fig = _figure(1.0 + 4.0 * len(surgeries), 4.4, layout="constrained")
    for ax, layer in zip(np.atleast_1d(fig.subplots(1, len(surgeries))), surgeries):
        _draw_surgery(ax, layer, len(result["layers"]))
    fig.suptitle(_wrap(_titled("ELBO surgery (Hoffman & Johnson): mean KL = I(n, z) + KL(q(z) || p(z))",
                               analysis_title(result)), 1.0 + 4.0 * len(surgeries), 11), fontsize=11)
    return _save(fig, path)


def plot_analysis(result, out_dir):
    """``gaps.png`` (or ``surgery.png`` for a hierarchy with an ELBO surgery) and ``unit_activity.png`` of an
    ``analysis.json`` dict into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    if result.get("gaps"):
        first = [plot_gaps(result, out_dir / "gaps.png")]
    else:
        first = [plot_surgery(result, out_dir / "surgery.png")] if _surgeries(result) else []
    return first + [plot_unit_activity(result, out_dir / "unit_activity.png")]


def plot_sweep_curves(curves, path, title):
    """``curves.png`` of a sweep: the validation ELBO per epoch of every run, one colour per configuration
    and one line style per seed (the legend, right of the panels, names each once). From 10 epochs on, a
    right panel enlarges the last half of the epochs, where runs that differ by a nat are told apart, and
    the left one is scaled to the epochs from the fifth (the untrained model starts far below). A dotted
    vertical line marks each epoch where the learning rate of the first run changed. Few epochs are drawn
    with markers, so a run with one epoch shows its point. ``curves``: {configuration: [(seed, epochs,
    valid_elbo, lr)]}. Returns path."""
    from matplotlib.lines import Line2D

    runs = [(name, seed, np.asarray(e), np.asarray(v, dtype=np.float64), lr)
            for name, seeds in curves.items() for seed, e, v, lr in seeds if len(e)]
    if not runs:
        raise ValueError("no run of the sweep has a finished epoch to plot")
    first = min(int(e[0]) for _, _, e, _, _ in runs)
    last = max(int(e[-1]) for _, _, e, _, _ in runs)
    zoom = last >= 10
    fig = _figure(13.0 if zoom else 8.5, 4.8, layout="constrained")
    panels = fig.subplots(1, 2 if zoom else 1, squeeze=False)[0]
    start = max(first, last // 2)
    spans = [(first, min(5, last) if zoom else first, "all epochs")]  # (first shown, first scaled, title)
    if zoom:
        spans.append((start, start, f"epochs {start}-{last}"))
    colours = {name: f"C{i % 10}" for i, name in enumerate(curves)}
    seeds = sorted({seed for _, seed, *_ in runs})
    styles = {seed: ("-", "--", ":", "-.")[i % 4] for i, seed in enumerate(seeds)}
    _, _, e0, _, lr0 = runs[0]
    changes = [int(e0[i]) for i in range(1, len(e0)) if lr0[i] != lr0[i - 1]]
    for ax, (lo, scaled, name) in zip(panels, spans):
        for config, seed, e, v, _ in runs:
            keep = e >= lo
            ax.plot(e[keep], v[keep], styles[seed], color=colours[config], lw=1.2, marker="o",
                    ms=_marker_size(last - lo + 1, most=12))  # many runs: markers only for a few epochs
        for c in changes:
            if c >= lo:
                ax.axvline(c, color="0.6", lw=0.8, ls=":")
        _integer_axis(ax, lo, last)
        # Scaled to the values from epoch ``scaled`` on: the untrained model's first epochs are far below.
        shown = np.concatenate([v[e >= scaled] for _, _, e, v, _ in runs])
        shown = shown[np.isfinite(shown)]
        if shown.size:
            pad = 0.08 * (shown.max() - shown.min()) or 0.5
            ax.set_ylim(shown.min() - pad, shown.max() + pad)
        ax.set_xlabel("epoch")
        ax.set_title(name + (" (dotted: learning-rate changes)" if any(c >= lo for c in changes) else ""),
                     fontsize=10)
        ax.grid(alpha=0.3)
    panels[0].set_ylabel("validation ELBO (nats per image)")
    handles = [Line2D([], [], color=colours[name], lw=2, label=name) for name in curves
               if any(run[0] == name for run in runs)]
    if len(seeds) > 1:
        handles += [Line2D([], [], color="0.3", ls=styles[seed], lw=1.2, label=f"seed {seed}") for seed in seeds]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(_wrap(title, 13.0 if zoom else 8.5, 11), fontsize=11)
    return _save(fig, path)

"""Pictures of structured posteriors for a few test images: the diagonals of the Cholesky factor L of each
precision P = L L^T (``cholesky_diagonals.png``) and the posterior correlation matrices
(``correlation.png``). The numbers come from :mod:`gvae.evaluation.pictures`; what they mean (a diagonal's
name, whether the family is banded) the posterior family says."""
import numpy as np

from . import canvas
from .titles import titled

MAX_DIAGONALS = 6  # lines in the Cholesky picture for families with many diagonals (full, rank1)


def _point_axes(fig, x, labels, main_width):
    """One panel per row of x, each with a thumbnail of the input image on its left (when the data are
    square images) and a title naming the test image. Returns the main axes."""
    n = len(x)
    side = canvas.image_side(x.shape[1])
    thumb = 0.9 if side is not None else 0.0
    ratios = [thumb, main_width] * n if side is not None else [main_width] * n
    grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios)
    axes = []
    for b in range(n):
        if side is not None:
            t = fig.add_subplot(grid[0, 2 * b])
            canvas.gray(t, np.asarray(x[b], dtype=np.float64).reshape(side, side))
            t.set_xlabel("input", fontsize=8)
            ax = fig.add_subplot(grid[0, 2 * b + 1])
        else:
            ax = fig.add_subplot(grid[0, b])
        title = f"test image {b}" + ("" if labels is None else f" (digit {int(labels[b])})")
        ax.set_title(title, fontsize=10)
        axes.append(ax)
    return axes


def _family_words(family, d, subtitle):
    """" (family, d = ...)" for a title that has no run line (``subtitle``) saying so already, else ""."""
    return "" if subtitle else f" ({family.name}, d = {d})"


def plot_cholesky_diagonals(x, diagonals, family, path, labels=None, subtitle=None):
    """``cholesky_diagonals.png``: for each row of x (a few test images, (B, n)), the entries of the
    Cholesky factor L of its posterior precision P = L L^T along each diagonal of ``diagonals`` = (offsets,
    values (B, K, d), free (K, d)) as ``family.factor_diagonals`` gives them: one line per diagonal,
    plotted against the row index i of L[i, i - offset], named by ``family.diagonal_label``; entries the
    stencil keeps at zero (``free`` False), such as lattice links that would wrap around a row, are left
    out. Returns the path."""
    offsets, values, free = diagonals
    d = values.shape[-1]
    fig = canvas.new_figure(4.9 * len(x) + 0.3, 3.9, layout="constrained")
    axes = _point_axes(fig, x, labels, 4.0)
    for b, ax in enumerate(axes):
        for k, o in enumerate(offsets):
            shown = np.where(free[k, o:], values[b, k, o:], np.nan)  # gaps where the stencil has no link
            ax.plot(np.arange(o, d), shown, "o-", ms=canvas.marker_size(d), lw=1.2,
                    label=family.diagonal_label(o, d))
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("row i of L")
        ax.grid(alpha=0.3)
        canvas.integer_axis(ax, 0, d - 1)
    axes[0].set_ylabel("entry of L")
    # One legend for every panel, below them: inside a panel it would hide a diagonal's values.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(offsets), fontsize=8)
    how = "its stencil diagonals" if family.banded else "first diagonals of the dense Cholesky factor"
    fig.suptitle(titled(f"Cholesky factor L of the posterior precision P = L L$^T$: {how}"
                        + _family_words(family, d, subtitle), subtitle), fontsize=11)
    return canvas.save(fig, path)


def plot_correlation(x, corr, family, path, labels=None, subtitle=None):
    """``correlation.png``: the posterior correlation matrices ``corr`` (B, d, d) of z for the rows of x
    (B, n), as ``family.correlation`` gives them, drawn as heatmaps on one diverging colour scale over
    [-1, 1]. Returns the path."""
    d = corr.shape[-1]
    fig = canvas.new_figure(4.1 * len(x) + 1.0, 3.7, layout="constrained")
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
    fig.suptitle(titled("Posterior correlation matrices" + _family_words(family, d, subtitle), subtitle),
                 fontsize=11)
    return canvas.save(fig, path)

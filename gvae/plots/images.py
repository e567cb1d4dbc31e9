"""Grids of square images: test images above their reconstructions (``reconstructions.png``), decoder means
of prior draws (``decoder_means.png``, the picture ``gvae sample`` writes under that name) and the learned
2-d manifold (``manifold.png``). Each draws host arrays that :mod:`gvae.evaluation.pictures` computed."""
import numpy as np

from ..io.images import tile
from . import canvas
from .titles import titled


def plot_reconstructions(x, recon, path, labels=None, subtitle=None):
    """``reconstructions.png``: the rows of x (N, n) (top) and their reconstructions ``recon`` (N, n), the
    decoder means at the posterior means (bottom), with the digit ``labels`` (N,) under them when given.
    Returns the path."""
    side = canvas.side_or_raise(x.shape[1])
    n = len(x)
    pad = 2
    grid = tile(np.concatenate([np.asarray(x, dtype=np.float64), recon]).reshape(2 * n, side, side), 2, n, pad=pad)
    zoom = 2 if side <= 32 else 1
    fig, ax = canvas.image_figure(grid, zoom, titled("Reconstructions: decoder mean at z = posterior mean",
                                                     subtitle), left=1.25, bottom=0.5 if labels is not None else 0.2)
    centre = [pad + k * (side + pad) + (side - 1) / 2 for k in range(max(n, 2))]
    ax.set_yticks(centre[:2], ["test image", "reconstruction"])
    if labels is not None:
        ax.set_xticks(centre[:n], [str(int(v)) for v in np.asarray(labels)[:n]], fontsize=9)
        ax.set_xlabel("digit label")
    ax.tick_params(length=0)
    return canvas.save(fig, path)


def prior_draws_title(model, what, n, which):
    """The title of a grid of ``what`` ("decoder means") for n prior draws of the ``which`` parameters of
    ``model`` (the model's ``prior_text`` names the draws)."""
    return f"{what} for {n} {model.prior_text} ({which} parameters)"


def plot_image_grid(images, path, title, subtitle=None, cols=None):
    """Square images (N, n) in [0, 1] as one titled grid (``cols`` per row, default about sqrt(N)).
    Returns the path."""
    images = np.clip(np.asarray(images, dtype=np.float64), 0, 1)
    side = canvas.side_or_raise(images.shape[1])
    grid = tile(images.reshape(-1, side, side), cols=cols, pad=2)
    fig, _ = canvas.image_figure(grid, 2 if side <= 32 else 1, titled(title, subtitle), left=0.4, right=0.4)
    return canvas.save(fig, path)


def plot_manifold(means, values, path, subtitle=None):
    """``manifold.png``: the decoder means (n * n, pixels) at the n x n latent points of
    :func:`gvae.evaluation.pictures.manifold_grid` whose coordinates are ``values`` (n,), tiled into one
    image (the learned-manifold picture of Kingma and Welling), z_1 rising to the right and z_2 upward.
    Returns the path."""
    n = len(values)
    side = canvas.side_or_raise(means.shape[1])
    img = tile(means.reshape(-1, side, side), n, n, pad=0)
    zoom = 1 if n * side >= 400 else 2
    fig, ax = canvas.image_figure(img, zoom, titled(f"Learned manifold: decoder means at {n} x {n} Gaussian "
                                                    "quantiles of z", subtitle), left=0.75, right=0.35, bottom=0.65)
    step = max(1, n // 5)
    ticks = list(range(0, n, step)) + ([n - 1] if (n - 1) % step else [])
    centres = [k * side + (side - 1) / 2 for k in ticks]
    ax.set_xticks(centres, [f"{values[k]:.2f}" for k in ticks], fontsize=9)
    ax.set_yticks(centres, [f"{values[::-1][k]:.2f}" for k in ticks], fontsize=9)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return canvas.save(fig, path)

"""Every picture of a trained run (``gvae plot``): its learning curves, and from its model the
reconstructions, decoder means, manifold and structured-posterior pictures, their numbers computed by
:mod:`gvae.evaluation.pictures` on the parameters' device and read back once each."""
import sys
from pathlib import Path

from ..evaluation import pictures
from . import canvas
from .curves import plot_curves
from .images import plot_image_grid, plot_manifold, plot_reconstructions, prior_draws_title
from .posterior import MAX_DIAGONALS, plot_cholesky_diagonals, plot_correlation
from .titles import run_title

PRIOR_DRAWS = 64  # the decoder means of an 8 x 8 grid of draws z ~ N(0, I)
MANIFOLD_SIDE = 20  # the manifold's n x n latent points


def plot_run(run, out_dir=None, n_images=16, seed=0, n_points=3):
    """Write the pictures of a run opened with :func:`gvae.training.runs.open_run` and its test images
    (``.with_test_set(data)``) into ``out_dir`` (default: the run folder).

    ``n_images`` of its test images are reconstructed, ``seed`` draws the z of ``decoder_means.png``
    (those of ``gvae sample --seed``), the first ``n_points`` test images are shown in the
    structured-posterior pictures. Image pictures are skipped, with a message on stderr, when the data
    are not square images. Returns the list of written paths."""
    canvas.require()
    if isinstance(run, (str, Path)):
        raise TypeError("plot_run takes an opened run with its test images: "
                        f"plot_run(gvae.training.runs.open_run({str(run)!r}).with_test_set(data))")
    if run.test_x is None:
        raise ValueError("plot_run needs the run's test images: pass open_run(...).with_test_set(data)")
    model, params, test_x, test_y = run.model, run.params, run.test_x, run.test_y
    out_dir = run.run_dir if out_dir is None else Path(out_dir)
    subtitle = run_title(run.config, run.run_dir)
    written = [plot_curves(run.run_dir, out_dir / "curves.png")]
    if canvas.image_side(test_x.shape[1]) is None:
        print(f"gvae plot: skipping reconstructions.png, decoder_means.png and manifold.png: the data have "
              f"{test_x.shape[1]} pixels, not a square number, so they are not drawn as images",
              file=sys.stderr)
    else:
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        shown = test_x[:n_images]
        written.append(plot_reconstructions(shown, pictures.reconstructions(model, params, shown),
                                            out_dir / "reconstructions.png", test_y, subtitle))
        written.append(plot_image_grid(pictures.prior_means(model, params, PRIOR_DRAWS, seed),
                                       out_dir / "decoder_means.png",
                                       prior_draws_title(model, "Decoder means", PRIOR_DRAWS, run.which), subtitle))
        if model.sizes == (2,):
            means, values = pictures.manifold_means(model, params, MANIFOLD_SIDE)
            written.append(plot_manifold(means, values, out_dir / "manifold.png", subtitle))
    family = model.layers[0].family
    if family.structured:
        pts = test_x[:n_points]
        labels = None if test_y is None else test_y[:n_points]
        written.append(plot_cholesky_diagonals(pts, pictures.factor_diagonals(model, params, pts, MAX_DIAGONALS),
                                               family, out_dir / "cholesky_diagonals.png", labels, subtitle))
        written.append(plot_correlation(pts, pictures.correlations(model, params, pts), family,
                                        out_dir / "correlation.png", labels, subtitle))
    return written

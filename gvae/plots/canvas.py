"""The canvas every picture is drawn on: a :class:`matplotlib.figure.Figure` on its own Agg canvas (no pyplot,
no global state), image axes at an exact zoom, the axis helpers the pictures share, and the PNG writer.

matplotlib is an optional extra (``pip install 'gvae[plot]'``) imported only when a figure is made;
:func:`available` says whether it is there. Every PNG is written atomically with
:func:`gvae.io.files.atomic_path`, at ``DPI`` dots per inch."""
import importlib.util
import math
from pathlib import Path

import numpy as np

from ..io.files import atomic_path
from .titles import wrap

DPI = 100
MISSING = "gvae plot needs matplotlib: pip install 'gvae[plot]'"


def available():
    """Whether matplotlib (the optional extra ``gvae[plot]``) is installed to draw with."""
    return importlib.util.find_spec("matplotlib") is not None


def require():
    """Raise RuntimeError saying what to install when matplotlib is not there."""
    if not available():
        raise RuntimeError(MISSING)


def new_figure(width, height, layout=None):
    """A new Figure ``width`` x ``height`` inches on its own Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError(MISSING) from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def image_figure(img, zoom, title, left=0.25, right=0.25, bottom=0.25, top=0.3, least_width=5.0):
    """A figure showing the 2-d array img in [0, 1] at exactly ``zoom`` screen pixels per image pixel
    (crisp, no resampling), with margins given in inches (the top one grows with the title's lines), and
    at least ``least_width`` inches wide (a small grid is centred), so its title's phrases fit on a line.
    Returns (fig, ax)."""
    h, w = img.shape
    aw, ah = w * zoom / DPI, h * zoom / DPI
    widen = max(0.0, least_width - (aw + left + right)) / 2
    left, right = left + widen, right + widen
    fw = aw + left + right
    title = wrap(title, fw, 11)
    fh = ah + bottom + top + 0.2 * (title.count("\n") + 1)
    fig = new_figure(fw, fh)
    ax = fig.add_axes([left / fw, bottom / fh, aw / fw, ah / fh])
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    return fig, ax


def gray(ax, img, title=None):
    """The 2-d array img in [0, 1] on ``ax`` in gray levels, without ticks."""
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def image_side(n):
    """The side of a square image of n pixels, or None if n is not a perfect square."""
    side = math.isqrt(int(n))
    return side if side * side == n and side > 0 else None


def side_or_raise(n):
    """The side of a square image of n pixels; a ValueError when n is not a square number."""
    side = image_side(n)
    if side is None:
        raise ValueError(f"cannot draw images of {n} pixels: {n} is not a square number")
    return side


def marker_size(points, most=60):
    """Marker size for a line of ``points`` points: large enough that one point alone is seen (a line
    needs two), smaller as they crowd, none beyond ``most`` (the line shows them)."""
    return 0 if points > most else 6 if points <= 12 else 3


def integer_axis(ax, first, last, axis="x"):
    """Limit ``ax``'s x (or y) axis to the integers first..last with half a step of margin (a few
    percent for long ranges), ticked at integers only: an epoch or a unit index has no fractions, and
    no tick falls outside the range."""
    from matplotlib.ticker import MaxNLocator
    pad = max(0.5, 0.02 * (last - first))
    getattr(ax, f"set_{axis}lim")(first - pad, last + pad)
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))


def save(fig, path):
    """Render fig and write it as a PNG, atomically: 8-bit grayscale when the picture has no colour,
    a lossless 256-colour palette when it has few colours, RGB otherwise (keeps files small). Returns
    the path."""
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

"""Latent units or pixels on an r x c lattice (row-major): the stencils of the chain, grid and extended
grid (Malago & Peste's Gaussian graphical models) as band offsets, and the mask that removes the links
a band would otherwise make across the lattice's edges."""
import numpy as np

from ..kernels.band import validate_offsets



def chain_offsets():
    """(0, 1): each coordinate linked to the previous one."""
    return (0, 1)


def grid_offsets(rows, cols):
    """(0, 1, cols): left and upper neighbours on a rows x cols lattice (cols >= 2)."""
    _lattice("grid_offsets", rows, cols, 2)
    return (0, 1, cols)


def extgrid_offsets(rows, cols):
    """(0, 1, cols-1, cols, cols+1): left, upper-right, upper and upper-left neighbours (cols >= 3)."""
    _lattice("extgrid_offsets", rows, cols, 3)
    return (0, 1, cols - 1, cols, cols + 1)


def _lattice(name, rows, cols, min_cols):
    for what, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")
    if cols < min_cols:
        raise ValueError(f"{name}: cols must be >= {min_cols} for distinct offsets, got {cols}")


def lattice_mask(offsets, rows, cols, dtype=np.float64):
    """(K, n) 0/1 mask, n = rows * cols, of the band slots that link lattice neighbours.

    Slot (k, i) links pixel i = (r, c) to pixel j = i - o_k. Offset o is read as the displacement
    (dr, dc) with dc = ((o + h) mod cols) - h, h = (cols - 1) // 2 (so 1 -> (0, 1), cols-1 -> (1, -1),
    cols -> (1, 0), cols+1 -> (1, 1)); the slot is kept iff j >= 0 and 0 <= c - dc < cols. This zeroes the
    wrap-around of offset 1 (first pixel of a row to the last of the row above, c = 0), of cols+1
    (c = 0) and of cols-1 (last pixel of a row to the first of the same row, c = cols-1), and the slots
    with i < o_k that do not exist. Multiply the factor's off-diagonals by it."""
    _lattice("lattice_mask", rows, cols, 1)
    n = rows * cols
    offs = validate_offsets("lattice_mask", offsets, n)
    h = (cols - 1) // 2
    i = np.arange(n)
    col = i % cols
    mask = np.empty((len(offs), n), dtype=dtype)
    for k, o in enumerate(offs.tolist()):
        dc = (o + h) % cols - h
        mask[k] = (i >= o) & (col - dc >= 0) & (col - dc < cols)
    return mask


def lattice_shape(d, grid_shape=None):
    """(rows, cols) for d latent units: ``grid_shape`` if given, else the most square factorisation."""
    if grid_shape is not None:
        rows, cols = (int(v) for v in grid_shape)
        if rows < 1 or cols < 1 or rows * cols != d:
            raise ValueError(f"grid shape {rows} x {cols} does not hold the latent dimension {d}")
        return rows, cols
    rows = max(r for r in range(1, int(np.sqrt(d)) + 1) if d % r == 0)
    if rows == 1:
        raise ValueError(f"latent dimension {d} has no r x c lattice with r, c >= 2 (it is prime or 1); "
                         "choose another --latent or give --grid-shape")
    return rows, d // rows

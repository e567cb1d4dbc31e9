"""Image grids as PNG files, with NumPy and zlib only (no plotting library needed)."""
import math
import struct
import zlib

import numpy as np

from .files import atomic_path


def tile(images, rows=None, cols=None, pad=1, pad_value=1.0):
    """Images (N, h*w) square or (N, h, w), values in [0, 1] -> one grid laid out row by row, ``pad``
    pixels of ``pad_value`` between and around them; ``cols`` defaults to ceil(sqrt(N)) and ``rows`` to
    what N needs; unused cells stay ``pad_value``."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"cannot lay out images of {images.shape[1]} pixels: not a square; "
                             "pass (N, h, w) arrays")
        images = images.reshape(-1, side, side)
    n, h, w = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = rows or max(1, math.ceil(n / cols))
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows} x {cols} grid")
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return grid


def write_png(path, image, scale=1):
    """Write a grayscale image (H, W) with values in [0, 1] as an 8-bit PNG, atomically; each pixel
    becomes a ``scale`` x ``scale`` block."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"write_png expects a 2-D grayscale image, got shape {image.shape}")
    if scale > 1:
        image = np.kron(image, np.ones((scale, scale)))
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per scanline

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(png)

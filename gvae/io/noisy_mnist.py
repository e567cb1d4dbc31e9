"""Noisy MNIST, the two-view data set of deep CCA and VCCA (Wang, Arora, Livescu, Bilmes, "On deep
multi-view representation learning", ICML 2015; Wang, Yan, Lee, Livescu, "Deep variational canonical
correlation analysis", 2016), built reproducibly from MNIST.

For each image of a split (intensities in [0, 1], 28 x 28, with its label):

- view 1 is the digit rotated about the image's centre by an angle drawn uniformly from [-pi/4, pi/4]
  (bilinear interpolation, zero outside the image: :func:`rotate`);
- view 2 is another image of the same class, drawn uniformly from the same split, with independent
  uniform [0, 1] noise added to every pixel and the sum clipped to [0, 1].

The angles, partners and noise come from one NumPy generator seeded with ``seed`` and the split's name,
so that a split is the same whatever the others hold. What the digit is (the label) is all the two views
share: CCA-like methods that recover it from view 1 alone find the class.
"""
import zlib

import numpy as np

SPLITS = ("train", "valid", "test")
MAX_ANGLE = np.pi / 4
ROTATE_PART = 256  # images per part of :func:`rotate`


def rotate(images, angles, side=28):
    """``images`` (N, side * side) turned by ``angles`` (N,) radians about the centre of the image (clockwise
    as displayed, rows downwards), bilinear, zero outside: float32 (N, side * side). The value at output
    pixel p is the input's at R(-angle) (p - c) + c, c the centre, read between the four nearest pixels."""
    images = np.asarray(images, dtype=np.float32).reshape(-1, side, side)
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (len(images),):
        raise ValueError(f"rotate takes one angle per image: {len(images)} images, angles of shape {angles.shape}")
    # In parts that stay in the cache: the whole split's coordinates at once (several arrays of 8 bytes per
    # pixel of every image) are written to memory and read back for each of the four neighbours.
    out = np.empty((len(images), side * side), dtype=np.float32)
    for start in range(0, len(images), ROTATE_PART):
        part = slice(start, start + ROTATE_PART)
        out[part] = _rotate_part(images[part], angles[part], side)
    return out


def _rotate_part(images, angles, side):
    """:func:`rotate` of ``images`` (N, side, side) float32 by ``angles`` (N,) float64."""
    c = (side - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(side) - c, np.arange(side) - c, indexing="ij")
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    # The output pixel (r, c), relative to the centre, reads the source at R(-angle) (r, c): a clockwise turn on
    # screen, where the row index grows downwards (scipy.ndimage.rotate by -angle degrees, order 1).
    src_r = cos * rows - sin * cols + c
    src_c = sin * rows + cos * cols + c
    r0, c0 = np.floor(src_r).astype(np.int64), np.floor(src_c).astype(np.int64)
    fr, fc = (src_r - r0).astype(np.float32), (src_c - c0).astype(np.float32)
    n = np.arange(len(images))[:, None, None]
    out = np.zeros_like(images)
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                           (1, 1, fr * fc)):
        r, col = r0 + dr, c0 + dc
        inside = (r >= 0) & (r < side) & (col >= 0) & (col < side)
        out += np.where(inside, images[n, np.clip(r, 0, side - 1), np.clip(col, 0, side - 1)], 0.0) * weight
    return out.reshape(len(images), side * side)


def two_views(x, y, rng, side=28):
    """(view1, view2) of the images ``x`` (N, side * side) in [0, 1] with labels ``y`` (N,), drawn from the
    NumPy generator ``rng`` in this order: the angles, the partners, the noise; float32 (N, side * side)
    each. A class with a single image is its own partner."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != side * side:
        raise ValueError(f"noisy MNIST is made of {side} x {side} images, (N, {side * side}); got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"noisy MNIST needs one label per image: {len(x)} images, labels of shape {y.shape}")
    angles = rng.uniform(-MAX_ANGLE, MAX_ANGLE, size=len(x))
    partner = np.empty(len(x), dtype=np.int64)
    order = np.argsort(y, kind="stable")
    classes, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    for start, count in zip(starts, counts):  # a partner of the same class, uniform over the split's images
        members = order[start:start + count]
        partner[members] = members[rng.integers(0, count, size=count)]
    noise = rng.uniform(0.0, 1.0, size=x.shape).astype(np.float32)
    return rotate(x, angles, side), np.minimum(x[partner] + noise, 1.0)


def noisy_mnist(data, seed=0, splits=SPLITS):
    """The two views of the ``splits`` of ``data`` ({split: (x, y)}, as :func:`gvae.io.mnist.load_mnist` returns
    it) as {split: (view1, view2, y)}, made with the generator of ``seed`` and the split's name (so a split
    built alone is the same as built with the others). ValueError naming the split when it has no labels (the
    partner of an image is drawn from its class)."""
    out = {}
    for split in splits:
        part = data[split]
        if len(part) < 2 or part[1] is None:
            raise ValueError(f"noisy MNIST pairs images of one class, and the {split} split has no labels; give a "
                             f"data set with {split}_y (--data)")
        rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
        view1, view2 = two_views(part[0], part[1], rng)
        out[split] = (view1, view2, np.asarray(part[1]))
    return out

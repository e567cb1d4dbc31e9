"""Noisy MNIST's rotation in parts (gvae.io.noisy_mnist.rotate): a split of any size turns as each image
alone turns, bit for bit, so that the parts change no run's data (tests/test_vcca.py checks the rotation
against scipy's)."""
import numpy as np

from gvae.io import noisy_mnist
from gvae.io.noisy_mnist import rotate


def test_a_split_rotated_in_parts_is_each_image_rotated_alone(monkeypatch):
    monkeypatch.setattr(noisy_mnist, "ROTATE_PART", 3)  # parts of 3, 3, 3, 1
    rng = np.random.default_rng(5)
    images = rng.random((10, 784)).astype(np.float32)
    angles = rng.uniform(-np.pi / 4, np.pi / 4, 10)
    whole = rotate(images, angles)
    alone = np.concatenate([noisy_mnist._rotate_part(images[i:i + 1].reshape(1, 28, 28), angles[i:i + 1], 28)
                            for i in range(10)])
    assert whole.dtype == np.float32 and whole.shape == (10, 784)
    assert whole.tobytes() == alone.reshape(10, 784).tobytes()
    assert rotate(images[:0], angles[:0]).shape == (0, 784)

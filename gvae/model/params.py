"""Named parameter arrays stored as views into one flat buffer, so the optimiser makes one pass."""
import numpy as np


class FlatParams:
    """``views[name]`` are arrays of the given shapes sharing the flat buffer ``flat`` (dtype ``dtype``)."""

    def __init__(self, shapes, dtype=np.float32):
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.dtype = np.dtype(dtype)
        sizes = [int(np.prod(s)) for s in self.shapes.values()]
        self.flat = np.zeros(sum(sizes), dtype=self.dtype)
        self.slices = {}
        start = 0
        for name, size in zip(self.shapes, sizes):
            self.slices[name] = slice(start, start + size)
            start += size
        self.views = self.unflatten(self.flat)

    @property
    def size(self):
        return self.flat.size

    def unflatten(self, flat):
        """A dict of views of ``flat`` (any buffer of this layout) under the parameter names."""
        return {name: flat[sl].reshape(self.shapes[name]) for name, sl in self.slices.items()}

    def flatten(self, tree, out=None):
        """Copy a dict of arrays with this layout into ``out`` (a new flat buffer if None)."""
        if out is None:
            out = np.empty(self.size, dtype=self.dtype)
        for name, sl in self.slices.items():
            out[sl] = tree[name].reshape(-1)
        return out

"""Hypothesis strategies the tests share: float64 arrays, broadcastable pairs, an array with an axis, and
banded factors with right-hand sides that broadcast against them."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.band_reference import random_factor

floats = st.floats(-3, 3, allow_nan=False, width=64)
positive = st.floats(0.2, 3, allow_nan=False, width=64)
# kinks (relu, elu, |x| at 0) kept out of the finite-difference window
off_zero = floats.filter(lambda x: abs(x) > 1e-3)


def arrays(shape, elements=floats):
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def broadcast_pair(draw, elements_b=floats):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4))
    a = draw(arrays(shapes.input_shapes[0]))
    b = draw(arrays(shapes.input_shapes[1], elements_b))
    return a, b


@st.composite
def array_and_axis(draw):
    """(x, axis, keepdims): axis None, one axis (negative too) or a tuple of axes."""
    x = draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1),
                          st.lists(st.integers(0, x.ndim - 1), min_size=1, unique=True).map(tuple)))
    return x, axis, draw(st.booleans())


@st.composite
def band_problem(draw):
    """(L, offsets, b, seed): a random factor (batch of up to two axes, n <= 12, up to 5 diagonals, NaN in
    the slots that do not exist) and a right-hand side whose lead broadcasts with the batch."""
    n = draw(st.integers(1, 12))
    rest = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=4, unique=True)) if n > 1 else []
    offsets = (0,) + tuple(sorted(rest))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    # a right-hand-side lead that broadcasts with batch: each axis kept or shrunk to 1, then either
    # leading axes dropped or leading sample axes added
    lead = [draw(st.sampled_from([s, 1])) for s in batch]
    drop = draw(st.integers(0, len(lead)))
    lead = lead[drop:] if drop else draw(st.lists(st.integers(1, 3), max_size=2)) + lead
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    L = random_factor(rng, batch, offsets, n)
    b = rng.standard_normal(tuple(lead) + (n,))
    return L, offsets, b, seed

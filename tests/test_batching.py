"""An epoch's data: stochastic binarisation and the shuffled batches that cover every image once."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gvae.model.likelihoods import binarize
from gvae.training.trainer import batches


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_binarize_mean_matches(p, seed):
    x = np.full((200, 784), p, np.float32)
    b = binarize(x, np.random.default_rng(seed))
    assert b.dtype == np.float32 and b.shape == x.shape
    assert set(np.unique(b)) <= {0.0, 1.0}
    # 156800 Bernoulli draws: 6 standard deviations is at most 0.0076.
    assert abs(b.mean() - x.mean()) < 0.008


def test_binarize_is_redrawn():
    x = np.full((10, 784), 0.5, np.float32)
    rng = np.random.default_rng(0)
    assert not np.array_equal(binarize(x, rng), binarize(x, rng))


@given(n=st.integers(0, 300), batch_size=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_batches_cover_each_index_once(n, batch_size, seed):
    parts = list(batches(n, batch_size, np.random.default_rng(seed)))
    assert all(len(b) == batch_size for b in parts[:-1])
    assert all(1 <= len(b) <= batch_size for b in parts)
    assert len(parts) == -(-n // batch_size)
    flat = np.concatenate(parts) if parts else np.array([], np.int64)
    assert np.array_equal(np.sort(flat), np.arange(n))
    if n > 20:
        assert not np.array_equal(flat, np.arange(n))  # shuffled


def test_batches_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size >= 1"):
        batches(10, 0, np.random.default_rng(0))

"""An epoch's data: the likelihood's observations (stochastic binarisation, dequantisation) and the
shuffled batches that cover every image once."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gvae.model.likelihoods import get_likelihood
from gvae.training.batching import batches, binarize, dequantize, epoch_batches, observations


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


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "logitnormal"])
def test_observations_are_what_the_likelihood_models(name):
    """Binary pixels for a Bernoulli likelihood, dequantised intensities within its squash margin for a
    continuous one; the same draws as binarize or dequantize on the same generator."""
    lik = get_likelihood(name, 16, **({} if name == "bernoulli" else {"squash": 1e-3}))
    x = (np.random.default_rng(0).integers(0, 256, (30, 16)) / 256).astype(np.float32)
    obs = observations(x, lik, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    expected = dequantize(x, rng, 1e-3) if lik.continuous else binarize(x, rng)
    np.testing.assert_array_equal(obs, expected)
    assert obs.dtype == np.float32 and obs.shape == x.shape
    if lik.continuous:
        assert obs.min() > 1e-3 and obs.max() < 1 - 1e-3  # the likelihood's own margin, not the default 1e-6
    else:
        assert set(np.unique(obs)) == {0.0, 1.0}


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_an_epoch_draws_the_observations_then_the_order(name):
    """epoch_batches: the observations of all of x, then the shuffled batches, both drawn at once from the
    generator (the steps' noise comes after), as the loop drew them when it prepared the data itself."""
    lik = get_likelihood(name, 5)
    x = (np.random.default_rng(0).integers(0, 256, (23, 5)) / 256).astype(np.float32)
    rng, ref = np.random.default_rng(7), np.random.default_rng(7)
    parts = epoch_batches(x, lik, 10, rng)
    after = rng.random()  # before any batch is taken
    obs = observations(x, lik, ref)
    expected = [obs[idx] for idx in batches(len(x), 10, ref)]
    assert after == ref.random()
    got = list(parts)
    assert [len(b) for b in got] == [10, 10, 3]
    for b, e in zip(got, expected):
        np.testing.assert_array_equal(b, e)

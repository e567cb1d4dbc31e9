"""The evaluation's batches side by side on gvae's threads (gvae.evaluation.evaluate._side_by_side): the same
bits as each batch run alone, an interruption keeping only whole batches before it, a resumed evaluation
passing its own check, and which models take batches side by side."""
import numpy as np
import pytest

import gvae.evaluation.evaluate as ev
from gvae import kernels
from gvae.evaluation.task_weights import TaskWeights
from tests.helpers import Passes
from tests.test_hierarchy import linear_gaussian_hierarchy
from tests.test_iwae import factor_analysis

SETTINGS = dict(ks=(1, 5), seed=3, batch_size=5, progress=False)


@pytest.fixture
def two_threads(split_everything):
    kernels.set_threads(2)
    yield


@pytest.fixture(scope="module")
def problem():
    model, params, x, _ = factor_analysis(seed=6, points=33)  # 7 batches of 5 rows: three pairs and one alone
    return model, params, x


def alone(monkeypatch):
    """Make importance_sampling run one batch at a time, as before batches ran side by side."""
    monkeypatch.setattr(ev, "_side_by_side", lambda source, count: 1)


def test_batches_side_by_side_give_the_bits_of_batches_alone(problem, two_threads, monkeypatch):
    model, params, x = problem
    assert ev._side_by_side(ev._source(model), 2) == 2
    seen = []
    together = ev.importance_sampling(model, params, x, 40, 7, ks=(1, 5), batch_size=5, progress=False,
                                      on_batch=lambda rows, out: seen.append(rows))
    assert seen == [5, 10, 15, 20, 25, 30, 33]  # told of every batch, in order
    with monkeypatch.context() as m:
        alone(m)
        single = ev.importance_sampling(model, params, x, 40, 7, ks=(1, 5), batch_size=5, progress=False)
    assert set(together) == set(single) == {"log_likelihood", "iwae_1", "iwae_5"}
    for key in together:
        np.testing.assert_array_equal(together[key], single[key])
    # and a chunk smaller than the samples (several passes per batch, each cut for the two threads)
    small = ev.importance_sampling(model, params, x, 40, 7, ks=(1, 5), batch_size=5, memory_mb=1e-4, progress=False)
    assert ev._chunk(model, 40, 5, 1e-4) < 40
    with monkeypatch.context() as m:
        alone(m)
        small_alone = ev.importance_sampling(model, params, x, 40, 7, ks=(1, 5), batch_size=5, memory_mb=1e-4,
                                             progress=False)
    for key in small:
        np.testing.assert_array_equal(small[key], small_alone[key])


def test_an_interruption_keeps_the_pairs_finished_before_it(problem, two_threads, tmp_path, monkeypatch):
    """One pass per batch here: the third pass is in the second pair, whose two batches are both lost; the
    resumed evaluation passes its check (a stored batch recomputed bit for bit) and ends as one that ran
    through."""
    model, params, x = problem
    full, means, _ = ev.evaluate(model, params, x, 20, **SETTINGS)
    path = tmp_path / "progress.npz"
    real = ev._log_weights_into
    monkeypatch.setattr(ev, "_log_weights_into", Passes(real, stop_at=3))
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(model, params, x, 20, **SETTINGS, partial=path, save_seconds=1e9)
    with np.load(path) as f:
        assert int(f["rows"]) == 10
    calls = Passes(real)
    monkeypatch.setattr(ev, "_log_weights_into", calls)
    per, again, _ = ev.evaluate(model, params, x, 20, **SETTINGS, partial=path)
    assert calls.count == 1 + 5  # one stored batch recomputed as the check, then the five batches left
    assert again == means
    for key in full:
        np.testing.assert_array_equal(per[key], full[key])


def test_a_hierarchy_and_other_sources_keep_one_batch_at_a_time():
    """Their passes hold whole activations (a hierarchy's upper encoders, a task's networks): side by side
    they would hold one pass per thread, beyond the memory bound."""
    model = factor_analysis(seed=6, points=10)[0]
    assert ev._side_by_side(ev._source(model), 2) == 2
    assert ev._side_by_side(ev._source(model), 1) == 1
    hierarchy = linear_gaussian_hierarchy("bottom-up")[0]
    assert ev._side_by_side(ev._source(hierarchy), 2) == 1
    source = TaskWeights.__new__(TaskWeights)  # any source that is not a VAE's
    assert ev._side_by_side(source, 2) == 1

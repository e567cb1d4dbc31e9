"""The CPU training step replayed from its native record (gvae/training/captured_step.py) against the taped
step, bit for bit: every step's reported means, and the parameters, Adam's moments and the counters after
a plan of batches that records, checks, replays, meets a non-finite batch, a new KL weight and a new
epoch. The replay makes no Python call per kernel. Steps the recording cannot take (refused, or caught
by the check against the tape) stay on the tape, exactly as before."""
import sys

import numpy as np
import pytest

import gvae.models  # noqa: F401  (registers the literature models' tasks)
from gvae import kernels
from gvae.kernels.cpu import programs
from gvae.training import TrainConfig, Trainer, captured_step
from gvae.kernels.cpu.capture import CpuRecord


@pytest.fixture(autouse=True)
def _no_trial(monkeypatch):
    """The tests here count replays, so no key's steps alternate with the tape in a timed trial (that trial
    is tested on its own, below, with a clock of the test's)."""
    monkeypatch.setattr(captured_step, "TRIAL_STEPS", 0)


def _trainer(tmp_path, name, hidden=(50,), **settings):
    rng = np.random.default_rng(0)
    x = (rng.random((100, 784)) < 0.13).astype(np.float32)
    y = np.arange(len(x)) % 10  # (VCCA pairs images of one class)
    data = {"train": (x, y), "valid": (x[:20], y[:20]), "test": (x[:20], y[:20])}
    cfg = TrainConfig.of(**{**dict(posterior="diagonal", latent=9, hidden=hidden, batch_size=20, seed=0,
                                dtype="float32"), **settings})
    return Trainer(cfg, data, tmp_path / name, progress=False, quiet=True)


def _state(t):
    s = t.state
    average = [] if s.average is None else [s.average.copy()]
    return [a.copy() for a in (s.params.flat, s.optimizer.m, s.optimizer.v)] + average + [
        s.optimizer.step, s.bad_steps, s.skipped_steps]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _plan(trainer):
    xs = [trainer.train_x[i * 20:(i + 1) * 20] for i in range(5)]
    bad = xs[0].copy()
    bad[0, 0] = np.nan  # a non-finite loss: the step is skipped, replayed or taped
    return ([(xs[i % 5], 1.0) for i in range(6)] + [(bad, 1.0), (xs[3], 1.0), (xs[4], 0.5), (xs[0], 0.5),
                                                     (xs[1], 0.5), ("epoch", None), (xs[2], 0.5), (xs[3], 0.5),
                                                     (xs[4], 0.5), (xs[0], 0.5)])


def _run_both(tmp_path, **settings):
    native, tape = _trainer(tmp_path, "native", **settings), _trainer(tmp_path, "tape", **settings)
    tape.captured.capture = None
    for x, kl in _plan(native):
        if isinstance(x, str):
            native.rng, tape.rng = native.epoch_generator(1), tape.epoch_generator(1)
            continue
        # The NaN batch's loss is NaN (its invalid values warned by NumPy); the loop runs its steps under
        # np.errstate and names what was not finite itself, as the skipped step here.
        with np.errstate(invalid="ignore"):
            assert native.step(x, kl) == tape.step(x, kl)
    assert native.state.skipped_steps == 1
    assert _same(_state(native), _state(tape))
    return native


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("settings", [{}, {"polyak": 0.9}, {"clip_norm": 1e-3}, {"beta": 0.5},
                                      {"activation": "relu", "hidden": (40, 30)}, {"samples": 2},
                                      {"dtype": "float64"}, {"iw_samples": 3}, {"iw_samples": 3, "beta": 0.5},
                                      {"kl": "mc"}, {"posterior": "chain"}, {"posterior": "grid"},
                                      {"posterior": "extgrid", "iw_samples": 3}, {"posterior": "full", "latent": 5},
                                      {"posterior": "full", "latent": 40}, {"posterior": "rank1"},
                                      {"posterior": "rank1", "iw_samples": 3}, {"posterior": "ar1"},
                                      {"posterior": "ar1", "kl": "mc"}, {"target_rate": 5.0}, {"mmd": 10.0},
                                      {"mmd": 10.0, "mmd_kernel": "rbf", "posterior": "chain"}, {"alpha": 0.5},
                                      {"latent": (9, 5)}, {"latent": (9, 5), "inference": "top-down"},
                                      {"latent": (9, 5, 4), "inference": "top-down", "merge": "precision"},
                                      {"task": "fullvb"}, {"task": "corex"}, {"task": "mae", "mi_target": 3.0},
                                      {"task": "sbn", "iw_samples": 3}, {"task": "darn", "iw_samples": 3},
                                      {"task": "darn", "estimator": "taylor"},
                                      {"task": "darn", "estimator": "taylor", "latent": (9, 5)},
                                      {"task": "darn", "estimator": "taylor", "latent": (9, 5),
                                       "likelihood": "ar-bernoulli"},
                                      {"likelihood": "ar-bernoulli", "iw_samples": 3},
                                      {"task": "sbndef", "iw_samples": 2}, {"task": "hvm"},
                                      {"task": "hvm", "posterior": "chain", "samples": 2},
                                      {"task": "sbn", "estimator": "nvil"}, {"task": "gammadef", "latent": (6, 4)},
                                      {"task": "gammadef", "latent": (6,), "def_weights": "gamma"},
                                      {"task": "poissondef", "latent": (6, 4), "iw_samples": 2},
                                      {"task": "poissondef", "latent": (6,), "estimator": "nvil"}])
def test_replayed_steps_are_the_taped_steps(tmp_path, count, settings):
    kernels.set_threads(count)
    try:
        native = _run_both(tmp_path, **settings)
    finally:
        kernels.set_threads(1)
    # Recorded at the second step of a key, checked at the third, replayed from then on.
    assert native.captured.refused == [] and native.captured.replays >= 8


@pytest.mark.parametrize("settings", [{"task": "vcca"}, {"task": "vcca", "private": 3, "dropout": 0.2},
                                      {"task": "vcca", "private": 3, "samples": 2},
                                      {"task": "vcca", "dropout": 0.2, "input_dropout": 0.2},
                                      {"task": "vcca", "dropout": 0.2, "input_dropout": 0.2, "code_dropout": 0.2,
                                       "decoder_draws": "own", "samples": 2, "view2_likelihood": "pixel-gaussian"},
                                      {"task": "vlae", "latent": (4, 4)}, {"task": "classify", "latent": 9},
                                      {"task": "classify", "latent": 9, "posterior": "chain", "samples": 3}])
def test_tasks_whose_batches_are_tuples_replay_their_taped_steps(tmp_path, settings):
    native, tape = _trainer(tmp_path, "native", **settings), _trainer(tmp_path, "tape", **settings)
    tape.captured.capture = None
    batches = list(native.task.batches(native.inputs["train"], 20, np.random.default_rng(1)))
    for i in range(9):
        assert native.step(batches[i % len(batches)], 1.0) == tape.step(batches[i % len(batches)], 1.0)
    assert _same(_state(native), _state(tape))
    assert native.captured.refused == [] and native.captured.replays >= 6


def test_steps_the_record_cannot_take_stay_on_the_tape(tmp_path, monkeypatch):
    """NVIL's step holds products of a matrix and a vector (its baseline's one output); with no gemv for the
    native loop to call (another BLAS, say), NumPy's matmul runs them, a Python task."""
    from gvae.kernels.cpu import blas
    monkeypatch.setattr(blas, "gemv_address", lambda dtype: None)
    native = _run_both(tmp_path, task="sbn", estimator="nvil")
    assert native.captured.replays == 0
    assert {why for _, why in native.captured.refused} == {
        "a task without a native form (_Product) ran while recording"}


def test_a_replay_that_differs_from_the_tape_is_never_trusted(tmp_path, monkeypatch):
    """Work the recording does not see (here: the loss scaled in NumPy, outside the kernels) leaves the
    record's output stale; the check against the tape catches it and the key stays on the tape."""
    native, tape = _trainer(tmp_path, "native"), _trainer(tmp_path, "tape")
    tape.captured.capture = None

    def unseen(step_fn):
        def wrapped(params, model, x, *rest):
            return step_fn(params, model, np.multiply(x, 1.0, dtype=x.dtype), *rest)  # NumPy: not recorded
        return wrapped
    native.captured.step_fn = unseen(native.captured.step_fn)
    for x, kl in _plan(native)[:6]:
        assert native.step(x, kl) == tape.step(x, kl)
    assert native.captured.replays == 0
    assert [why for _, why in native.captured.refused] == ["a replay differed from the tape"]
    assert _same(_state(native), _state(tape))


def _python_calls(fn):
    calls = []
    sys.setprofile(lambda frame, event, arg: calls.append(1) if event == "call" else None)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return len(calls)


def test_a_replayed_step_makes_no_python_call_per_kernel(tmp_path):
    counts, kernels_run = [], []
    for hidden in [(30,), (30, 30, 30, 30)]:
        t = _trainer(tmp_path, f"h{len(hidden)}", hidden=hidden)
        xs = [t.train_x[i * 20:(i + 1) * 20] for i in range(5)]
        for i in range(4):
            t.step(xs[i], 1.0)
        [record] = t.captured.records
        assert record.trusted
        counts.append(_python_calls(lambda: t.captured._value_and_grad(t.task.step_args((xs[4],), t.rng, 1.0))))
        kernels_run.append(len(record.record))
        taped = _python_calls(lambda: t.captured._tape(record.args))
    assert kernels_run[1] >= kernels_run[0] + 12  # three more layers: their kernels, forward and backward
    assert counts[1] == counts[0]  # the replay's Python does not grow with them
    assert taped > 10 * counts[1]


def test_a_recorded_sparse_product_takes_any_batch_and_a_dense_batch_gets_a_record_of_its_own(tmp_path):
    """The first layer's products run on the batch's sparse rows; the record sizes their scratch for a
    batch without zeros. A batch the tape would multiply densely stops the sparse record at its guard, is
    recorded as the key's second record and taped; from then on each batch replays the record its data
    take, and a third way (none here: one decision) would be taped."""
    native, tape = _trainer(tmp_path, "native"), _trainer(tmp_path, "tape")
    tape.captured.capture = None
    xs = [native.train_x[i * 20:(i + 1) * 20] for i in range(5)]
    dense = np.ones_like(xs[0])
    replays = []
    for x in xs[:4] + [dense, xs[4], dense, xs[0], dense, dense, xs[1]]:
        assert native.step(x, 1.0) == tape.step(x, 1.0)
        replays.append(native.captured.replays)
    assert _same(_state(native), _state(tape))
    # tape, record, check, replay; dense: recorded; sparse replayed; dense: checked; then every one replayed
    assert replays == [0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6]
    records = native.captured.records
    assert len(records) == 2 and all(r.trusted for r in records) and native.captured.refused == []


def test_a_replay_stops_at_a_decision_that_changed(tmp_path, monkeypatch):
    """A record whose guard fails runs only up to the guard's group: the tasks after it are not run."""
    native = _trainer(tmp_path, "native")
    xs = [native.train_x[i * 20:(i + 1) * 20] for i in range(5)]
    for x in xs[:4]:
        native.step(x, 1.0)
    [record] = native.captured.records
    program = record.record.program
    ran = []
    real = programs._replay

    def counting(table, boards, posted, flags):
        real(table, boards, posted, flags)
        ran.append(flags[0])
    monkeypatch.setattr(programs, "_replay", counting)
    for dst, src in zip(record.inputs, native.captured._leaves(native.task.step_args((np.ones_like(xs[0]),),
                                                                                    native.rng, 1.0), [], [])[0]):
        dst[...] = src
    before = record.record.outputs[0].copy()
    assert not record.record.run() and ran == [1.0]
    # the loss, written at the end of the forward pass, is still the last replay's: the run stopped early
    assert np.array_equal(record.record.outputs[0], before) and len(program) > 10


def test_a_recording_sees_the_threads_it_was_made_for(tmp_path):
    """Another thread count is another key: recorded again, never the old program run on other threads."""
    kernels.set_threads(1)  # (not the process's default, which is every core: the count must change below)
    native = _trainer(tmp_path, "native")
    xs = [native.train_x[i * 20:(i + 1) * 20] for i in range(5)]
    for x in xs[:4]:
        native.step(x, 1.0)
    [first] = native.captured.records
    kernels.set_threads(2)
    try:
        native.step(xs[4], 1.0)
        assert native.captured.records == [first] and native.captured.seen != first.key
        assert programs.recording_open() is False
    finally:
        kernels.set_threads(1)


@pytest.mark.parametrize("cfg", [dict(task="classify"), dict(task="mae", mi_target=2.0), dict(task="fullvb"),
                                 dict(task="hvm"), dict(task="sbn", iw_samples=3), dict(task="darn", iw_samples=3),
                                 dict(task="vlae", latent=(6, 4)), dict(task="corex", anchors=(1,), anchor_weight=0.5),
                                 dict(task="gammadef", latent=(6, 4)), dict(task="sbndef", latent=(6, 4), iw_samples=3),
                                 dict(task="poissondef", latent=(6, 4), iw_samples=3), dict(task="vcca", dropout=0.2),
                                 dict(task="generate", mmd=10.0), dict(task="generate", target_rate=3.0)],
                         ids=lambda cfg: "-".join(str(v) for v in cfg.values()))
def test_every_task_steps_as_the_tape_does(cfg, tmp_path):
    """Whatever a task's step records, replays or leaves on the tape, its steps are the tape's, bit for bit."""
    from tests.helpers import make_data
    data = make_data(n=120, d=784 if cfg["task"] == "vcca" else 36)  # (noisy MNIST's views are 28 x 28)
    config = TrainConfig.of(**{"latent": 6, "hidden": (16,), "epochs": 2, "batch_size": 40, "lr": 3e-3, "seed": 3,
                            "dtype": "float32", **cfg})
    native = Trainer(config, data, tmp_path / "native", progress=False, quiet=True)
    tape = Trainer(config, data, tmp_path / "tape", progress=False, quiet=True)
    tape.captured.capture = None
    batches = [b for b in native.task.batches(native.inputs["train"], 40, np.random.default_rng(0))]
    for k in range(8):
        batch = batches[k % len(batches)]
        assert native.step(batch, 1.0) == tape.step(batch, 1.0), k
    assert _same(_state(native), _state(tape))


@pytest.mark.parametrize("tape_faster", [True, False])
def test_a_key_goes_on_the_faster_way_of_its_trial(tmp_path, monkeypatch, tape_faster):
    """Once a key's record is trusted, its steps alternate between the tape and the replay (each timed by
    the trial's clock, here one that a taped step advances by 2 or 4 units and a replayed run by 3) until
    each way has TRIAL_STEPS; then the faster way goes on: the tape drops the records and says why in
    ``refused``. Every step is the tape's, bit for bit, whichever way it ran."""
    monkeypatch.setattr(captured_step, "TRIAL_STEPS", 3)
    now = [0.0]
    monkeypatch.setattr(captured_step, "_clock", lambda: now[0])
    run = CpuRecord.run

    def replay_costs_3(record):
        now[0] += 3.0
        return run(record)
    monkeypatch.setattr(CpuRecord, "run", replay_costs_3)
    native, tape = _trainer(tmp_path, "native"), _trainer(tmp_path, "tape")
    tape.captured.capture = None
    assert native.captured.trial_steps == 3
    taped = native.captured._tape

    def tape_costs(args):
        now[0] += 2.0 if tape_faster else 4.0
        return taped(args)
    native.captured._tape = tape_costs
    xs = [native.train_x[i * 20:(i + 1) * 20] for i in range(5)]
    replays = []
    for i in range(12):
        assert native.step(xs[i % 5], 1.0) == tape.step(xs[i % 5], 1.0)
        replays.append(native.captured.replays)
    assert _same(_state(native), _state(tape))
    # tape, record, check; the trial: taped, replayed, three times each; then the faster way only
    trial = [0, 0, 0, 0, 1, 1, 2, 2, 3]
    if tape_faster:
        assert replays == trial + [3, 3, 3] and native.captured.records == []
        [(key, why)] = native.captured.refused
        assert why == "the tape was faster: 2000.0 ms a step against 3000.0 replayed (medians of 3 steps each)"
    else:
        assert replays == trial + [4, 5, 6] and native.captured.refused == []
        assert len(native.captured.records) == 1 and native.captured.trial is None


def test_a_capture_whose_runs_return_early_has_no_trial(tmp_path, monkeypatch):
    """CUDA's graph launch returns before its work is done, so a wall clock cannot time it: no trial."""
    native = _trainer(tmp_path, "native")
    assert native.captured.trial_steps == 0  # (TRIAL_STEPS is 0 in this module)

    class Launches:
        synchronous = False
    assert captured_step.CapturedStep(native, Launches()).trial_steps == 0
    monkeypatch.setattr(captured_step, "TRIAL_STEPS", 8)
    assert captured_step.CapturedStep(native, Launches()).trial_steps == 0
    assert captured_step.CapturedStep(native, native.captured.capture).trial_steps == 8

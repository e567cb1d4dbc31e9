"""Training on small generated data: the loss falls, files appear, non-finite losses stop cleanly."""
import dataclasses
import json

import numpy as np
import pytest

from gvae.training import checkpoint
from gvae.io.files import read_jsonl
from gvae.training import NonFiniteError, TrainConfig, Trainer, train
from tests.helpers import make_data


def test_training_lowers_the_loss_and_writes_the_run(tmp_path):
    cfg = TrainConfig(latent=4, hidden=(32,), epochs=6, batch_size=20, lr=3e-3, seed=1)
    summary = train(cfg, make_data(), tmp_path, progress=False, quiet=True)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == list(range(1, 7))
    assert metrics[-1]["train_elbo"] > metrics[0]["train_elbo"] + 1.0
    assert metrics[-1]["valid_elbo"] > metrics[0]["valid_elbo"]
    for key in ("epoch", "train_elbo", "valid_elbo", "seconds"):
        assert key in metrics[0]
    assert json.loads((tmp_path / "config.json").read_text())["latent"] == 4
    assert np.isfinite(summary["test_elbo"]) and summary["test_elbo"] < 0
    arrays, meta = checkpoint.load(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 6 and arrays["params"].dtype == np.float32
    assert not list(tmp_path.glob(".*tmp*"))


def test_same_seed_same_run(tmp_path):
    cfg = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, seed=7)
    a = train(cfg, make_data(), tmp_path / "a", progress=False, quiet=True)
    b = train(cfg, make_data(), tmp_path / "b", progress=False, quiet=True)
    assert a["test_elbo"] == b["test_elbo"]


def test_warmup_and_mc_kl(tmp_path):
    cfg = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, warmup=4, kl="mc", samples=2)
    train(cfg, make_data(), tmp_path, progress=False, quiet=True)
    weights = [m["kl_weight"] for m in read_jsonl(tmp_path / "metrics.jsonl")]
    assert weights == [0.25, 0.5]


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    trainer = Trainer(TrainConfig(latent=2, hidden=(8,), epochs=3, batch_size=50, max_bad_steps=3),
                      make_data(), tmp_path, progress=False, quiet=True)
    trainer.fit()
    good = trainer.params.flat.copy()
    trainer.params.views["dec.W0"][0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"3 steps in a row.*the loss.*checkpoint.npz \(epoch 3\)"):
        trainer.step(trainer.train_x[:50], 1.0)
        trainer.step(trainer.train_x[:50], 1.0)
        trainer.step(trainer.train_x[:50], 1.0)
    assert trainer.state.skipped_steps == 3
    saved, _ = checkpoint.load(tmp_path / "checkpoint.npz")
    np.testing.assert_array_equal(saved["params"], good)


def test_a_run_written_before_init_existed_reads_as_he_and_resumes_identically(tmp_path):
    """Runs whose config.json has no "init" were initialised by the "he" scheme: loading, evaluating and
    resuming such a run says so, and continues it exactly as the uninterrupted run went on."""
    from gvae.training import load_model
    cfg = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, init="he", seed=3)
    whole = train(cfg, make_data(), tmp_path / "whole", progress=False, quiet=True)
    old = tmp_path / "old"
    train(dataclasses.replace(cfg, epochs=1), make_data(), old, progress=False, quiet=True)
    arrays, meta = checkpoint.load(old / "checkpoint.npz")
    del meta["config"]["init"]
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    checkpoint.save(old / "checkpoint.npz", arrays, meta)
    config = json.loads((old / "config.json").read_text())
    del config["init"]
    (old / "config.json").write_text(json.dumps(config))
    assert load_model(old)[2].init == "he"
    resumed = Trainer.resume(old, make_data(), progress=False, quiet=True, epochs=2).fit()
    assert json.loads((old / "config.json").read_text())["init"] == "he"
    assert resumed["test_elbo"] == whole["test_elbo"]
    assert [m["valid_elbo"] for m in read_jsonl(old / "metrics.jsonl")] == \
        [m["valid_elbo"] for m in read_jsonl(tmp_path / "whole" / "metrics.jsonl")]


def test_the_default_initialisation_is_uniform_and_he_stays_selectable(tmp_path):
    assert TrainConfig().init == "uniform"
    with pytest.raises(ValueError, match=r"init must be one of \['glorot', 'he', 'uniform', 'uniform-0.05'\]"):
        TrainConfig(init="zeros")
    a = Trainer(TrainConfig(latent=2, hidden=(8,), seed=1), make_data(), tmp_path / "a", progress=False)
    b = Trainer(TrainConfig(latent=2, hidden=(8,), seed=1, init="he"), make_data(), tmp_path / "b", progress=False)
    assert a.params.views["enc.b0"].any() and not b.params.views["enc.b0"].any()


def test_a_bernoulli_decoder_starts_at_the_logits_of_the_training_pixel_means(tmp_path):
    data = make_data()
    x = data["train"][0][:120]
    x[:, 0] = 0  # a pixel never on: its logit is clipped, not -inf
    trainer = Trainer(TrainConfig(latent=2, hidden=(8, 6), limit=120, seed=2), data, tmp_path / "a", progress=False)
    m = np.clip(x.mean(axis=0).astype(np.float64), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(trainer.params.views["dec.b2"], np.log(m / (1 - m)), rtol=1e-5)
    assert trainer.params.views["dec.b2"][0] == np.float32(np.log(1e-3 / (1 - 1e-3)))
    # the rest of the model is the seed's, as without data; "he" and other likelihoods keep drawn biases
    drawn = trainer.model.new_params(np.random.default_rng(2))
    for name, value in drawn.views.items():
        if name != "dec.b2":
            np.testing.assert_array_equal(trainer.params.views[name], value)
    he = Trainer(TrainConfig(latent=2, hidden=(8, 6), init="he"), data, tmp_path / "b", progress=False)
    assert not he.params.views["dec.b2"].any()
    gauss = Trainer(TrainConfig(latent=2, hidden=(8, 6), likelihood="gaussian", seed=2), data, tmp_path / "c",
                    progress=False)
    np.testing.assert_array_equal(gauss.params.views["dec.b2"],
                                  gauss.model.new_params(np.random.default_rng(2)).views["dec.b2"])


def test_bad_config_and_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match="latent must be >= 1"):
        TrainConfig(latent=0)
    data = make_data()
    data["train"] = (data["train"][0] * 3, data["train"][1])
    with pytest.raises(ValueError, match=r"data must lie in \[0, 1\]"):
        Trainer(TrainConfig(latent=2, hidden=(4,)), data, tmp_path)


def test_checkpoint_refuses_foreign_files(tmp_path):
    np.savez(tmp_path / "foreign.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a readable gvae checkpoint"):
        checkpoint.load(tmp_path / "foreign.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable gvae checkpoint"):
        checkpoint.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.npz")


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, {"params": np.arange(1000.0)}, {"epoch": 1})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="not a readable gvae checkpoint .damaged or truncated"):
        checkpoint.load(path)


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    from gvae.io.files import atomic_path, remove_stale_temporaries
    with pytest.raises(KeyboardInterrupt):  # a write interrupted before its rename
        with atomic_path(tmp_path / "metrics.jsonl") as tmp:
            tmp.write_text("partial")
            leftover = tmp.with_name(tmp.name + ".keep")
            leftover.write_text("as a SIGKILL would leave it")
            raise KeyboardInterrupt
    (tmp_path / "checkpoint.npz").write_text("kept")
    assert remove_stale_temporaries(tmp_path) == [leftover.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_json_files_stay_strict_json_with_non_finite_values(tmp_path):
    from gvae.io.files import write_json, write_jsonl
    values = {"test_elbo": float("nan"), "valid": float("-inf"), "rows": [1.5, float("inf")], "n": 3}
    write_json(tmp_path / "a.json", values)
    write_jsonl(tmp_path / "m.jsonl", [values])

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    expected = {"test_elbo": None, "valid": None, "rows": [1.5, None], "n": 3}
    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse) == expected
    assert json.loads((tmp_path / "m.jsonl").read_text(), parse_constant=refuse) == expected

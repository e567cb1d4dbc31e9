"""Flags are checked when they are parsed, and each error names its flag (nothing is fetched first)."""
import numpy as np
import pytest

from gvae.cli import main
from gvae.io import mnist


@pytest.mark.parametrize("argv, flag", [(["--seed", "-1"], "--seed"), (["--lr", "0"], "--lr"),
                                        (["--warmup", "-0.5"], "--warmup"), (["--latent", "0"], "--latent"),
                                        (["--epochs", "two"], "--epochs"), (["--lr", "nan"], "--lr")])
def test_bad_flag_is_named_before_any_work(argv, flag, capsys, monkeypatch):
    monkeypatch.setattr(mnist, "fetch_mnist", lambda *a: pytest.fail("data fetched before the flags were checked"))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", "unused", *argv])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0", "0.0", "0.00", "0e0"])
def test_zero_warmup_is_accepted_in_every_spelling(text):
    from gvae.commands import build_parser
    assert build_parser().parse_args(["train", "--out", "x", "--warmup", text]).warmup == 0.0


def test_an_empty_split_is_named(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_x": rng.random((n, 784), dtype=np.float32) for s, n in (("train", 10), ("valid", 0), ("test", 5))}
    arrays.update({f"{s}_y": np.zeros(len(arrays[f"{s}_x"]), np.int64) for s in ("train", "valid", "test")})
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match="the valid split holds no images"):
        mnist.load_mnist(tmp_path / "d.npz")

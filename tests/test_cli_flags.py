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


def test_the_one_parse_knows_which_settings_were_given():
    """gvae train parses argv once: a flag given with its default value counts as given (a resumed run
    refuses it unless it may change), a flag left out does not."""
    from gvae.commands import build_parser
    args = build_parser().parse_args(["train", "--out", "x", "--lr", "0.001", "--hidden", "3", "4", "--seed", "2"])
    assert set(args.given_config) == {"lr", "hidden", "seed"}
    assert (args.lr, args.hidden, args.seed, args.epochs) == (0.001, [3, 4], 2, 10)
    assert build_parser().parse_args(["train", "--out", "x"]).given_config == ()


@pytest.mark.parametrize("command, flags", [
    ("eval", {"--threads", "--params", "--seed", "--device", "--data"}),
    ("sample", {"--threads", "--params", "--seed", "--device"}),
    ("analyze", {"--threads", "--params", "--seed", "--device", "--data"}),
    ("plot", {"--threads", "--params", "--seed", "--device", "--data"})])
def test_every_command_that_opens_a_run_takes_the_shared_flags_alike(command, flags):
    import argparse

    from gvae.commands import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    actions = {s: a for a in sub._actions for s in a.option_strings}
    assert flags <= set(actions)
    assert actions["--params"].choices == ["best", "last"] and actions["--params"].default == "best"
    assert actions["--seed"].default == 0 and actions["--seed"].type("3") == 3
    assert actions["--device"].default == "cpu" and {"cpu", "cuda"} <= set(actions["--device"].choices)
    assert ("--data" in actions) == ("--data" in flags)  # where the command does not use it, it does not take it


@pytest.mark.parametrize("command", ["train", "eval", "sample", "analyze", "plot"])
def test_an_unknown_device_is_refused_alike_by_every_command(command, capsys):
    argv = ["train", "--out", "unused"] if command == "train" else [command, "unused"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--device", "tpu"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("gvae: error: argument --device: invalid choice: 'tpu'"), error
    assert error.endswith(f"(see gvae {command} --help)"), error


@pytest.mark.parametrize("argv, expected", [
    (["train", "--out", "x", "--posterior", "diagnal"], "argument --posterior: invalid choice: 'diagnal'"),
    (["train", "--out", "x", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["train"], "the following arguments are required: --out"),
    (["train", "--out", "x", "--threads"], "argument --threads: expected one argument"),
    (["train", "--out", "x", "--bogus"], "unrecognized arguments: --bogus"),
    (["trian", "--out", "x"], "argument command: invalid choice: 'trian'"),
    ([], "the following arguments are required: command"),
    (["eval"], "the following arguments are required: DIR"),
    (["sample", "x", "--n", "0"], "argument --n: expected a positive integer, got 0"),
    (["sweep"], "the following arguments are required: SPEC"),
])
def test_every_parser_error_is_one_line_with_the_prefix_of_every_error(argv, expected, capsys):
    """A misspelt choice, a bad number or a missing flag printed a usage block of up to 19 lines first, and
    "gvae train: error:" where every other error says "gvae: error:"."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    command = argv[0] if argv and argv[0] in ("train", "eval", "sample", "sweep") else None
    assert err.count("\n") == 1 and err.startswith(f"gvae: error: {expected}"), err
    assert err.endswith(f" (see gvae {command} --help)\n" if command else " (see gvae --help)\n"), err

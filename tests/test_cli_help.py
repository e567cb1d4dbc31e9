"""Every subcommand's --help: each flag's default shown once, in words a user can type or read (never
"None", which no flag accepts), none for a required flag, and texts that say what the code does."""
import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from gvae.commands import build_parser
from gvae.training.config import IWAE_SCHEDULE_EPOCHS, iwae_schedule


def subcommands():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def flag_entries(parser):
    """{flag: its help entry as one line} from the parser's rendered --help."""
    entries, current = {}, None
    for line in parser.format_help().splitlines():
        match = re.match(r"  (-\S+)", line)
        if match:
            current = match.group(1).rstrip(",")
            entries[current] = line.strip()
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_shows_each_default_once_and_never_none(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    parser = subcommands()[command]
    entries = flag_entries(parser)
    flags = [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]
    assert len(entries) == len(flags)  # every flag found in the text
    for action in flags:
        text = entries[action.option_strings[0]]
        assert "None" not in text, f"gvae {command} {text}"  # "(default: None)", "(None: all)"
        assert text.count("default:") <= 1, f"gvae {command} {text}"
        if action.required:
            assert "default" not in text, f"gvae {command} {text}"
        elif action.default is None:  # what happens without the flag, in words
            assert "default:" in text, f"gvae {command} {text}"


def test_required_out_of_train_has_no_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = flag_entries(subcommands()["train"])["--out"]
    assert "(default" not in text and "run folder to write" in text


def test_schedule_help_is_what_the_code_does(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = flag_entries(subcommands()["train"])["--schedule"]
    assert "--lr x 10^(-i/7)" in text and "3^i epochs" in text and f"({IWAE_SCHEDULE_EPOCHS} epochs" in text
    lr, start = 3e-3, 0
    for i in range(8):  # stage i: 3^i epochs at --lr x 10^(-i/7)
        for epoch in (start, start + 3 ** i - 1):
            assert iwae_schedule(epoch, lr) == pytest.approx(lr * 10 ** (-i / 7))
        start += 3 ** i
    assert start == IWAE_SCHEDULE_EPOCHS and iwae_schedule(10 ** 5, lr) == pytest.approx(lr * 10 ** -1)


def test_quiet_says_what_it_leaves_and_that_a_log_needs_none(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    train = flag_entries(subcommands()["train"])["--quiet"]
    assert "the result line only: no progress bar and no line per epoch" in train
    assert "without a terminal there is no bar, and one line per epoch" in train
    assert "a line per tenth of the work in a log" in flag_entries(subcommands()["eval"])["--quiet"]


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name):
    """examples/NAME.py as a module (its flags are parsed in main, not at import)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted([*EXAMPLES.glob("*.py"), *(EXAMPLES.parent / "benchmarks").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_parses_its_flags_with_gvaes_parser(path):
    """gvae.io.arguments.ArgumentParser, in the examples and the benchmarks: every default in --help (flags without
    help text showed none) and one-line errors, as gvae's own commands."""
    text = path.read_text()
    assert "argparse.ArgumentParser(" not in text
    if "ArgumentParser(" in text:
        assert "from gvae.io.arguments import ArgumentParser" in text


def test_an_examples_help_shows_its_defaults_and_an_error_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr("sys.argv", [str(EXAMPLES / "ggm_results.py")])  # its prog
    main = example("ggm_results").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "where the three files go (default: docs/results)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["runs/ggm", "--bogus"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("ggm_results.py: error: unrecognized arguments: --bogus (see ggm_results.py "
                                       "--help)\n")


def test_a_flag_without_help_text_shows_its_default():
    from gvae.io.arguments import ArgumentParser
    parser = ArgumentParser(prog="x")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--rate", default="50%")
    entries = {flag: " ".join(text.split()) for flag, text in flag_entries(parser).items()}
    assert entries["--epochs"] == "--epochs EPOCHS (default: 10)"
    assert entries["--hidden"].endswith("(default: 500 500)")
    assert entries["--limit"] == "--limit LIMIT" and entries["--rate"] == "--rate RATE (default: 50%)"

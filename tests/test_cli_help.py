"""Every subcommand's --help: each flag's default shown once, in words a user can type or read (never
"None", which no flag accepts), none for a required flag, and texts that say what the code does."""
import argparse
import re

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

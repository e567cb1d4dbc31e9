"""The titles of the pictures: a first line saying what a picture shows, a second naming the run (its folder,
posterior, likelihood and network), broken into lines between phrases so that "hidden 500 500" or
"N(0, I)" is never split."""
import re
import textwrap
from pathlib import Path


def _phrases(line):
    """``line`` split after each comma, colon or semicolon followed by a space outside brackets: "z ~ N(0, I),
    d = 16" -> ["z ~ N(0, I),", "d = 16"]."""
    phrases, depth, start = [], 0, 0
    for i, c in enumerate(line):
        depth += (c in "([{") - (c in ")]}")
        if c in ",:;" and depth == 0 and line[i + 1:i + 2] == " ":
            phrases.append(line[start:i + 1])
            start = i + 2
    return phrases + [line[start:]]


def wrap(title, width_inches, fontsize):
    """``title`` broken into lines that fit a figure ``width_inches`` wide (about 0.55 em per character),
    between its phrases (:func:`_phrases`); only a phrase longer than a line is broken between its
    words."""
    chars = max(20, int(width_inches * 72 / (0.55 * fontsize)))
    lines = []
    for line in title.split("\n"):
        current = ""
        for phrase in _phrases(line):
            if current and len(current) + 1 + len(phrase) > chars:
                lines.append(current)
                current = ""
            current = f"{current} {phrase}" if current else phrase
            if len(current) > chars:  # one phrase wider than the figure: break it between words
                *full, current = textwrap.wrap(current, chars)
                lines.extend(full)
        lines.append(current)
    return "\n".join(lines)


def titled(title, subtitle):
    """``title`` with ``subtitle`` (the run's line) on a second line when there is one."""
    return title if not subtitle else f"{title}\n{subtitle}"


def run_title(config, run_dir=None, posterior=True, likelihood=None):
    """One line naming the run folder, its posterior, likelihood and network: the second line of every
    picture's title, so a picture read on its own says what it shows. ``config``: a TrainConfig or its
    dict (None or empty: the folder's name alone); without ``posterior`` (a model whose codes are not of a
    Gaussian family, such as binary units) the line names the task in its place; ``likelihood``: the
    observation model's name where the task fixes its own (the config's otherwise)."""
    if not config:
        return "" if run_dir is None else Path(run_dir).name
    config = config if isinstance(config, dict) else config.flat()
    from ..model.vae import layer_widths  # here, when a title is made: the sweep's curves load no model
    hidden = " / ".join("-".join(map(str, h)) for h in layer_widths(config.get("hidden", ())))
    family = (f"{_words(config.get('posterior', '?'), ' ')} posterior" if posterior
              else f"task {config.get('task', '?')}")
    text = (f"{family}, {likelihood or config.get('likelihood', 'bernoulli')} likelihood, latent "
            f"{_words(config.get('latent', '?'), '-')}, hidden {hidden}")
    name = "" if run_dir is None else Path(run_dir).resolve().name
    # A folder named after its model ("extgrid") would only repeat a word of the line: left out then.
    if not name or name.lower() in re.findall(r"[\w.-]+", text.lower()):
        return text
    return f"{name}: {text}"


def _words(value, sep):
    """A config value that is one item or a list of them (one per stochastic layer), as text."""
    return sep.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

"""docs/reference/config.md from the code: one row per field of gvae.training.config.TrainConfig, with the
``gvae train`` flag it makes (gvae.commands builds the command line from the same fields), its default, what
the flag accepts and the help text, all as the field's metadata states them.

    python tools/config_table.py    # rewrites docs/reference/config.md (tests/test_docs_config_table.py checks it)
"""
import dataclasses
from pathlib import Path

from gvae.training.config import TrainConfig

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"
HEADER = """# TrainConfig: every setting of a run

Every field of `gvae.training.config.TrainConfig` (a run's `config.json`) is a flag of `gvae train`: the
field `batch_size` is `--batch-size`. This page is generated from the code by `python tools/config_table.py`;
`tests/test_docs_config_table.py` fails when it is out of date.

| field | flag | default | accepts | what it sets |
|---|---|---|---|---|
"""


def cell(text):
    """``text`` fit for one cell of a Markdown table (a | would end the cell, a newline the row)."""
    return " ".join(str(text).split()).replace("|", r"\|")


def default_text(value):
    """A default as it is typed on the command line: a list as its items, None as "none"."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def accepts(metadata):
    """What the flag accepts: its choices, or the name of the parser it is read with (a positive_integer ...),
    one or more of them where the flag takes a list."""
    if "choices" in metadata:
        kind = ", ".join(f"`{c}`" for c in metadata["choices"])
    elif "parse" in metadata:
        kind = metadata["parse"].__name__.replace("_", " ")
    else:
        kind = "text"
    return f"one or more of: {kind}" if metadata.get("nargs") == "+" else kind


def row(field):
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    flags = ", ".join(f"`--{name.replace('_', '-')}`" for name in (field.name, *field.metadata.get("aliases", ())))
    metavar = f" {cell(field.metadata['metavar'])}" if "metavar" in field.metadata else ""
    return (f"| `{field.name}` | {flags}{metavar} | `{cell(default_text(default))}` | {cell(accepts(field.metadata))} "
            f"| {cell(field.metadata['help'])} |\n")


def render():
    """The page's text: the header and one row per TrainConfig field, in the class's order."""
    return HEADER + "".join(row(f) for f in dataclasses.fields(TrainConfig))


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE} ({len(dataclasses.fields(TrainConfig))} fields)")

"""docs/reference/config.md from the code: one row per field of gvae.training.config.TrainConfig, then per
task with settings of its own one table of its options (the task's Options dataclass, in its folder of
gvae.models), each row with the ``gvae train`` flag it makes (gvae.commands builds the command line from the
same fields), its default, what the flag accepts and the help text, all as the field's metadata states them.

    python tools/config_table.py    # rewrites docs/reference/config.md (tests/test_docs_config_table.py checks it)
"""
import dataclasses
from pathlib import Path

import gvae.models  # noqa: F401  (registers the tasks, whose options are tables of the page)
from gvae.training.config import TrainConfig, option_fields
from gvae.training.tasks import TASKS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"
HEADER = """# TrainConfig: every setting of a run

Every field of `gvae.training.config.TrainConfig` (a run's `config.json`) is a flag of `gvae train`: the
field `batch_size` is `--batch-size`; so is every option of a task (`TrainConfig.options`, a dataclass in the
task's folder of `gvae.models`), listed below the common fields, task by task. This page is generated from the
code by `python tools/config_table.py`; `tests/test_docs_config_table.py` fails when it is out of date.

"""
TABLE = """| field | flag | default | accepts | what it sets |
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
            f"| {cell(help_text(field.metadata['help']))} |\n")


def help_text(help):
    """A field's help: its text, or the text a function of nothing makes (the task's, from the registry)."""
    return help() if callable(help) else help


def task_tables():
    """A table of each task's own options, the tasks in their order of registration (one table for options
    that several tasks share, naming them all)."""
    readers = {}  # Options dataclass -> the names of the tasks that read it
    for name, task in TASKS.items():
        if option_fields(task):
            readers.setdefault(task.settings.Options, []).append(name)
    return "".join(f"\n## Options of --task {', '.join(names)} (`{options.__module__}.{options.__qualname__}`)\n\n"
                   + TABLE + "".join(row(f) for f in dataclasses.fields(options))
                   for options, names in readers.items())


def render():
    """The page's text: the header, one row per TrainConfig field in the class's order, then the tasks'
    options."""
    return HEADER + TABLE + "".join(row(f) for f in dataclasses.fields(TrainConfig) if f.name != "options") + \
        task_tables()


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE} ({len(dataclasses.fields(TrainConfig)) - 1} fields and the tasks' options)")

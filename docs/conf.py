"""Sphinx configuration of gvae's documentation: the topic pages of docs/ (Markdown, through MyST) and the
API reference rendered from the docstrings (autodoc, NumPy-style sections through napoleon).

    python -m sphinx -W --keep-going -b html docs docs/_build/html   # tests/test_docs.py builds it so
"""
import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "gvae"
author = "the gvae developers"
copyright = "2026, the gvae developers"  # noqa: A001  (Sphinx's name)
release = version = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "results", "images/README.md"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]  # the topic pages link to repository files outside docs/

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_inherit_docstrings = False  # torch.distributions' docstrings are not gvae's (nor valid reST here)
napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_static_path = []

# gvae's docstrings write their maths in plain text: shapes as (*batch, n), norms as |x|^2. reST would read
# the * as emphasis and the | as a substitution, so both are escaped outside inline literals and roles.
_LITERAL = re.compile(r"(``.*?``|:\w+:`[^`]*`|`[^`]*`_?)")


def _indent(line):
    return len(line) - len(line.lstrip())


def _plain_maths(app, what, name, obj, options, lines):
    literal = None  # the indentation of the "::" line whose literal block is being read
    doctest = False  # inside a doctest block (">>>" to the next blank line)
    for i, line in enumerate(lines):
        doctest = bool(line.strip()) and (doctest or line.lstrip().startswith(">>>"))
        if doctest or literal is not None and (not line.strip() or _indent(line) > literal):
            continue  # literal and doctest blocks show their characters as they are
        literal = _indent(line) if line.rstrip().endswith("::") else None
        parts = _LITERAL.split(line)
        lines[i] = "".join(p if k % 2 else p.replace("*", r"\*").replace("|", r"\|") for k, p in enumerate(parts))


def _list_operations(app, docname, source):
    """gvae.ops' differentiable operations are Primitive objects, which autodoc's module listing passes
    over: the reference page gets one autofunction each, from gvae.ops.__all__ (no second list to keep)."""
    if docname == "reference/autodiff_ops":
        from gvae import ops
        from gvae.autodiff import Primitive
        names = [n for n in ops.__all__ if isinstance(getattr(ops, n), Primitive)]
        source[0] += "\n" + "".join(f".. autofunction:: gvae.ops.{n}\n\n" for n in names)


def setup(app):
    app.connect("autodoc-process-docstring", _plain_maths)
    app.connect("source-read", _list_operations)

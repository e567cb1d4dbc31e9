"""The examples in gvae's docstrings run as doctests: every module of the package whose source holds one
(found by reading the sources, so a new example is run without being listed here)."""
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gvae"
MODULES = sorted("gvae." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).replace(".__init__", "")
                 for p in PACKAGE.rglob("*.py") if ">>> " in p.read_text())


def test_the_examples_are_found():
    assert {"gvae.autodiff", "gvae.kernels.band.substitution"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted and not result.failed, f"{name}: {result.failed} of {result.attempted} examples failed"

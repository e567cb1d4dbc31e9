"""The documentation builds: Sphinx renders the topic pages of docs/ and the API reference from the
docstrings with every warning an error (docs/conf.py), and the reference holds what the public modules
export."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="building the docs needs Sphinx (pip install gvae[test])")
pytest.importorskip("myst_parser", reason="the topic pages need myst-parser (pip install gvae[test])")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return out


def _signatures(page):
    return set(re.findall(r'<span class="sig-name descname"><span class="pre">(\w+)</span>', page.read_text()))


def test_every_topic_page_is_rendered(html):
    """Every Markdown page of docs/ and its folders (tutorials, how-to guides, reference, explanation, models,
    the dated notes) becomes a page of the site."""
    docs = ROOT / "docs"
    topics = {p.relative_to(docs).with_suffix("").as_posix() for p in docs.rglob("*.md")
              if not {"_build", "results"} & set(p.parts) and p != docs / "images" / "README.md"}
    assert {"index", "notes/index", "reference/config", "tutorials/train_mnist"} <= topics
    missing = sorted(t for t in topics if not (html / f"{t}.html").exists())
    assert not missing, missing


def test_the_reference_documents_what_the_front_ends_and_ops_export(html):
    import gvae.jax
    import gvae.torch
    from gvae import ops
    for module, page in ((gvae.torch, "torch"), (gvae.jax, "jax"), (ops, "autodiff_ops")):
        missing = set(module.__all__) - _signatures(html / "reference" / f"{page}.html")
        assert not missing, f"reference/{page}.html lacks {sorted(missing)}"

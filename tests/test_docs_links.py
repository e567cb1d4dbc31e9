"""Every relative link of the documentation resolves: in docs/ and the README, a link to a file names one
that exists, and a link to a heading of a Markdown page (page.md#anchor, or #anchor on the same page) names a
heading the page has, by the anchor MyST and GitHub give it."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text):
    """The lines of a Markdown page outside its fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


def anchor(heading):
    """A heading's anchor: lower case, punctuation dropped but hyphens and underscores, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page):
    return {anchor(line.lstrip("#")) for line in prose(page.read_text()) if re.match(r"#{1,6} ", line)}


def links(page):
    """(line number, target) of every relative link of ``page``."""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        for target in LINK.findall(line):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                yield number, target


def test_the_pages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/notes/index.md", "docs/reference/config.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for number, target in links(page):
        path, _, heading = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"line {number}: {target} (no file {resolved.relative_to(ROOT)})")
        elif heading and resolved.suffix == ".md" and heading not in anchors(resolved):
            broken.append(f"line {number}: {target} (no heading #{heading} in {resolved.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)

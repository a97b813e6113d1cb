"""The documentation, checked: README stays a short page for users, and every relative link in
README.md, docs/*.md and the other Markdown pages leads to a file in the repository (a moved
section leaves no dead link)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

README_MAX_LINES = 250
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "README.md",
]
# [text](target) and [text]: target, outside code; a target with a scheme is not ours to check
INLINE = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without fenced blocks, indented code blocks and inline code."""
    text = FENCE.sub("", text)
    lines = [line for line in text.splitlines() if not line.startswith(("    ", "\t"))]
    return CODE.sub("", "\n".join(lines))


def relative_links(page: Path) -> list[str]:
    text = prose(page.read_text(encoding="utf-8"))
    targets = INLINE.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; at most {README_MAX_LINES}: move detail to docs/"
    )


def test_the_documented_pages_exist() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "usage.md", "cron.md", "dask.md", "what-happens.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if not path:  # a link within the page itself
            continue
        resolved = (page.parent / path).resolve()
        if not (resolved.is_file() and resolved.is_relative_to(ROOT.resolve())):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to no file in the repository: {broken}"


def test_the_link_finder_finds_links() -> None:
    found = relative_links(ROOT / "README.md")
    assert "docs/usage.md" in found and "CHANGELOG.md" in found

"""The README and the docs pages hold together: every relative link (and image) points at a file or folder
of the repository, every ``#anchor`` names a heading of its target page (GitHub's slugs), every code fence
is closed and no heading skips a level. Links inside code are not links and are not checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").rglob("*.md")])
WRITTEN = [p for p in PAGES if p.parent != REPO / "docs" / "results" and REPO / "docs" / "results" not in p.parents]  # not generated

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def prose_lines(text: str, blank_code: bool = True) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line outside fenced code blocks (inline code blanked out if asked)."""
    out, fence = [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif line.strip().startswith(fence):
                fence = None
            continue
        if fence is None:
            out.append((n, INLINE_CODE.sub(lambda c: " " * len(c.group(0)), line) if blank_code else line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``page`` (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8"), blank_code=False):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            k = seen.get(base, 0)
            seen[base] = k + 1
            found.add(base if k == 0 else f"{base}-{k}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """``(line number, target)`` of every relative link and image of ``page``."""
    out = []
    for n, line in prose_lines(page.read_text(encoding="utf-8")):
        for m in LINK.finditer(line):
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                out.append((n, target))
    return out


def broken(page: Path) -> list[str]:
    """A line per link of ``page`` whose file or anchor does not exist."""
    bad = []
    for n, target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{page.relative_to(REPO)}:{n}: {target}: no such file")
        elif not str(dest).startswith(str(REPO)):
            bad.append(f"{page.relative_to(REPO)}:{n}: {target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.relative_to(REPO)}:{n}: {target}: no heading with anchor #{anchor}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken(page) == []


@pytest.mark.parametrize("page", WRITTEN, ids=lambda p: str(p.relative_to(REPO)))
def test_fences_closed_and_headings_in_order(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    opened = [n for n, line in enumerate(text.splitlines(), 1) if FENCE.match(line)]
    assert len(opened) % 2 == 0, f"{page.name}: an unclosed code fence (fence lines {opened})"
    levels = [len(m.group(1)) for _, line in prose_lines(text, blank_code=False) if (m := HEADING.match(line))]
    assert levels and levels[0] == 1, f"{page.name}: the first heading must be a '# title'"
    jumps = [(a, b) for a, b in zip(levels, levels[1:]) if b > a + 1]
    assert jumps == [], f"{page.name}: a heading skips a level: {jumps}"


def test_the_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# T\n\n## A `code` heading: here\n\n[ok](#a-code-heading-here) [gone](nothing.md) "
                    "[bad](#no-such) `[in code](nothing.md)`\n```\n[in a fence](nothing.md)\n```\n")
    assert anchors(page) == {"t", "a-code-heading-here"}
    assert [t for _, t in links(page)] == ["#a-code-heading-here", "nothing.md", "#no-such"]
    global REPO
    old, REPO = REPO, tmp_path
    try:
        assert len(broken(page)) == 2
    finally:
        REPO = old

"""Docs that must match the code: the settings reference and the example file are what the
declarations render (refresh both with `python -m services.config_docs`), and every relative
link in the README, docs/ and BENCHMARKS.md points at a file (and a heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services import config_docs

ROOT = config_docs.ROOT
PAGES = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "EVALUATION.md",
                *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def test_the_settings_reference_is_rendered_from_the_declarations() -> None:
    doc = config_docs.DOC.read_text()
    assert doc == config_docs.doc_with_table(doc), "run: python -m services.config_docs"


def test_the_example_file_is_rendered_from_the_declarations() -> None:
    assert config_docs.EXAMPLE.read_text() == config_docs.example_yaml(), \
        "run: python -m services.config_docs"


def test_every_setting_is_declared_with_a_meaning() -> None:
    fields = config_docs.settings_fields()
    assert len(fields) > 40
    assert all(spec.meaning for _, _, spec in fields)
    assert all(spec.unset for _, f, spec in fields if f.default is None)


def prose(text: str) -> str:
    """The Markdown without code blocks and code spans: links there are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def relative_links(page: Path) -> list[tuple[Path, str]]:
    """(target file, anchor or "") of every relative link on the page."""
    out = []
    for target in LINK.findall(prose(page.read_text())):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        out.append(((page.parent / path).resolve() if path else page, anchor))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", page.read_text()), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_names_a_file_that_exists(page: Path) -> None:
    missing = [str(target) for target, _ in relative_links(page) if not target.exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_anchor_names_a_heading_of_its_page(page: Path) -> None:
    broken = [f"{target.name}#{anchor}" for target, anchor in relative_links(page)
              if anchor and target.suffix == ".md" and target.exists()
              and anchor not in anchors(target)]
    assert not broken, f"{page.relative_to(ROOT)} links to missing headings: {broken}"


def test_the_link_check_sees_links_and_skips_code() -> None:
    text = "[a](docs/x.md#h) `[b](c.md)` [web](https://example.com)\n```\n[d](e.md)\n```\n"
    assert LINK.findall(prose(text)) == ["docs/x.md#h", "https://example.com"]
    assert slug("`tempo-anomaly inspect`") == "tempo-anomaly-inspect"
    assert slug("Dependencies and the lock") == "dependencies-and-the-lock"

"""Every ``docs/<page>.md`` §N reference in the code and the README names an existing page and section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("recal_gym", "envs", "agents", "benchmarks", "examples", "scripts", "tests")
_NUMBER = r"[0-9][0-9.]*"
REF_RE = re.compile(
    rf"docs/(?P<page>[A-Za-z0-9_-]+\.md)`*\s*(?P<sections>§\s*{_NUMBER}(?:\s*(?:[-–,]|and)\s*§?\s*{_NUMBER})*)"
)
"""A page reference and what follows it: ``§4``, ``§4.1, §4.4``, ``§1-5``, ``§1.1-4.4``, ``§4, §5, §15``."""
HEADING_RE = re.compile(r"^#{1,6}\s+(?:\((?:[a-z])\)\s+)?([0-9]+(?:\.[0-9]+)*)\.?\s", re.MULTILINE)


def section_numbers(markdown: str) -> set[str]:
    """Numbers of the numbered headings of a page: ``## 4. Tag grammar`` -> ``4``, ``### 4.1 Input`` -> ``4.1``."""
    return {m.group(1) for m in HEADING_RE.finditer(markdown)}


def references(text: str) -> list[tuple[str, str]]:
    """Every (page, section) a text cites; a range ``§A-B`` cites both ends."""
    found = []
    for m in REF_RE.finditer(text):
        for number in re.findall(r"[0-9]+(?:\.[0-9]+)*", m.group("sections")):
            found.append((m.group("page"), number))
    return found


def broken_references(text: str, docs: Path) -> list[str]:
    """References in ``text`` to a missing page or a section the page does not have."""
    bad = []
    for page, number in references(text):
        path = docs / page
        if not path.is_file():
            bad.append(f"docs/{page} §{number}: no such page")
        elif number not in section_numbers(path.read_text(encoding="utf-8")):
            bad.append(f"docs/{page} §{number}: no heading numbered {number}")
    return bad


def _sources() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for folder in SCANNED:
        files.extend(sorted((REPO / folder).rglob("*.py")))
        files.extend(sorted((REPO / folder).rglob("*.sh")))
    files.extend(sorted((REPO / "benchmarks").rglob("*.md")))
    here = Path(__file__).resolve()
    return [f for f in files if f.is_file() and f.resolve() != here]  # this file holds deliberate bad ones


def test_every_docs_reference_in_the_repository_resolves() -> None:
    bad, total = [], 0
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        total += len(references(text))
        bad.extend(f"{path.relative_to(REPO)}: {b}" for b in broken_references(text, REPO / "docs"))
    assert total > 100, f"only {total} references found: is the pattern still right?"
    assert bad == []


def test_every_docs_page_has_numbered_sections_and_is_in_the_index() -> None:
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    for page in sorted((REPO / "docs").glob("*.md")):
        if page.name == "README.md":
            continue
        assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"
        assert len(section_numbers(page.read_text(encoding="utf-8"))) >= 3, page.name


def test_the_rewards_page_keeps_the_placeholder_for_custom_components() -> None:
    numbers = section_numbers((REPO / "docs" / "rewards.md").read_text(encoding="utf-8"))
    assert {str(n) for n in range(1, 15)} <= numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see ``docs/protocol.md`` §99 for more", ["docs/protocol.md §99: no heading numbered 99"]),
        ("``docs/nosuch.md`` §1", ["docs/nosuch.md §1: no such page"]),
        ("``docs/learner.md`` §4.1-4.9", ["docs/learner.md §4.9: no heading numbered 4.9"]),
        ("``docs/rewards.md`` §1, §77", ["docs/rewards.md §77: no heading numbered 77"]),
        ("``docs/protocol.md`` §4, §5.2 and §15", []),
        ("docs/pools.md §3", []),
    ],
)
def test_a_bad_reference_is_reported(text: str, expected: list[str]) -> None:
    assert broken_references(text, REPO / "docs") == expected


def test_heading_numbers() -> None:
    page = "# Title\n## 4. Tag grammar\n### 4.1 Input\n### (a) Preset\n## 12. Ranges at a glance\n"
    assert section_numbers(page) == {"4", "4.1", "12"}

"""The README stays a page a newcomer reads (the rest is in docs/), and no link in the
documentation leads nowhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "RESULTS.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for a file's headings."""
    found = set()
    in_code = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def test_the_readme_is_at_most_250_lines() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):  # https:, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []


def test_docs_has_the_topics_the_readme_points_to() -> None:
    for name in ("operations", "bot", "guarantees", "performance", "deployment", "development"):
        assert (ROOT / "docs" / f"{name}.md").exists(), name


def test_the_quick_start_says_how_to_stop_what_it_started_and_git_ignores_its_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "vidretry db down" in quick_start
    assert "./dev test` takes about" in quick_start
    assert "PgBouncer" in quick_start
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert {"vidretry.toml", "*.session"} <= set(ignored)

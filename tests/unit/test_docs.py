"""The project documents itself: the README links docs/, and nothing in the repo points outside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ["README.md", "Makefile", "pyproject.toml", "docs", "netk8s", "tests", "scripts", ".ci"]
TEXT_SUFFIXES = {".md", ".py", ".toml", ".sh", ".yaml", ".yml", ".txt", ".nft", ""}
# Notes kept beside the repository (the "shared" directory one level up) are not the project's docs.
OUTSIDE = re.compile(r"\.\./" + "shared|shared/(DESIGN|STYLE)\\.md")


def text_files() -> list[Path]:
    out = []
    for entry in SCANNED:
        path = REPO / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out += [f for f in files if f.suffix in TEXT_SUFFIXES and "__pycache__" not in f.parts]
    return out


def test_readme_links_the_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for doc in ("docs/architecture.md", "docs/development.md"):
        assert (REPO / doc).is_file(), doc
        assert f"]({doc})" in readme, f"README does not link {doc}"


def test_nothing_points_outside_the_repo() -> None:
    hits = [f"{f.relative_to(REPO)}:{n}" for f in text_files()
            for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "references to notes outside the repository: " + ", ".join(hits)


def test_docs_links_resolve() -> None:
    for doc in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"

"""benchmarks/RESULTS.md stays an index a newcomer can follow: every link resolves, every cited JSON exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
INDEX = BENCH / "RESULTS.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def _broken_links(doc: Path) -> list[str]:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            broken.append(f"{doc.relative_to(ROOT)}: {target} (no heading #{anchor})")
    return broken


def test_index_is_short_and_its_links_resolve() -> None:
    text = INDEX.read_text()
    assert len(text.splitlines()) < 600
    assert text.index("| claim | current figure | machine") < text.index("\n## ", text.index("## Claims") + 1)
    docs = [INDEX, ROOT / "README.md", *sorted((BENCH / "history").glob("*.md")),
            *sorted((BENCH / "investigations").glob("*.md"))]
    broken = [b for d in docs for b in _broken_links(d)]
    assert not broken, "\n".join(broken)


def test_every_json_the_claims_table_cites_exists() -> None:
    table = INDEX.read_text().split("## Claims", 1)[1].split("\n\n", 2)[1]
    rows = [r for r in table.splitlines() if r.startswith("| [")]
    assert len(rows) >= 10
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6, row
        for name in re.findall(r"`([^`/]+\.json)`", cells[5]):
            assert (BENCH / "results" / name).is_file(), f"{name} cited in RESULTS.md is not in benchmarks/results"


def test_commands_in_the_index_name_scripts_that_exist() -> None:
    for script in set(re.findall(r"python (benchmarks/[\w/]+\.py)", INDEX.read_text())):
        assert (ROOT / script).is_file(), f"RESULTS.md runs {script}, which does not exist"

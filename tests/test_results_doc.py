"""docs/results.md prints only measured numbers: each figure equals the committed artefact it cites."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARTEFACT = re.compile(r"`(results/real/[^`#]+)#([^`]+)`")


def _rows(text: str) -> list[tuple[dict[str, str], str, str]]:
    """(cells by header, artefact path, key) for every table row that cites an artefact."""
    out, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            found = ARTEFACT.search(line)
            if found:
                out.append((dict(zip(header, cells)), found.group(1), found.group(2)))
    return out


def _value(path: Path, key: str) -> float:
    node = json.loads(path.read_text())
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return float(node)


def test_every_figure_in_results_doc_equals_its_artefact():
    rows = _rows((REPO / "docs" / "results.md").read_text())
    assert len(rows) >= 20, "docs/results.md lost its tables of measured results"
    for cells, path, key in rows:
        artefact = REPO / path
        assert artefact.is_file(), f"docs/results.md cites {path}, which is not committed"
        assert cells["ours"] == f"{100 * _value(artefact, key):.2f}", (path, key, cells["ours"])


def test_differences_to_the_paper_are_computed_from_the_printed_figures():
    for cells, path, _ in _rows((REPO / "docs" / "results.md").read_text()):
        diff = cells.get("ours - paper", "")
        if diff:
            paper = float(cells["paper"].split("±")[0])
            assert float(diff) == round(float(cells["ours"]) - paper, 2), (path, cells)

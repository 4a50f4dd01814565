"""Writing a report's files: a CSV of rows, and the JSON + CSV + Markdown trio of `bench` and `cross-eval`."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Path:
    """`rows` as CSV with these columns (other keys left out; a missing or None value is an empty cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if row.get(k) is None else row[k]) for k in columns} for row in rows)
    return path


def write_report(folder: Path, stem: str, doc: dict[str, Any], rows: Iterable[dict[str, Any]],
                 columns: Sequence[str], markdown: str) -> dict[str, Path]:
    """`<stem>.json` (the whole document), `<stem>.csv` (the rows) and `<stem>.md` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / f"{stem}.json", "csv": folder / f"{stem}.csv", "md": folder / f"{stem}.md"}
    paths["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")
    write_csv(paths["csv"], rows, columns)
    paths["md"].write_text(markdown)
    return paths

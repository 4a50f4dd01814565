"""Folder-walking building blocks shared by the dataset readers (`lesion_lightning.data.datasets`).

Nothing here decodes a pixel. Non-image files (LICENSE.txt, csv files, .DS_Store and other hidden
files) are ignored, and every listing is sorted, so results never depend on the filesystem's order.
"""

from __future__ import annotations

import csv
import io as _io
import re
from pathlib import Path

from lesion_lightning.data.errors import DataError
from lesion_lightning.data.io import IMAGE_EXTENSIONS
from lesion_lightning.data.records import DatasetScan, Problem, SampleRecord

__all__ = ["ScanBuilder", "image_files", "find_dir", "pattern_regex", "mask_index", "case_file", "read_metadata_csv"]


def is_image_file(path: Path) -> bool:
    # Hidden files include macOS '._x.jpg' resource forks, which carry an image suffix.
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def find_dir(parent: Path, name: str) -> Path | None:
    """parent/name, matched case-insensitively when the exact name is absent; an archive that
    extracted into a same-named subfolder (name/name/) is followed one level down."""
    exact = parent / name
    found = exact if exact.is_dir() else None
    if found is None and parent.is_dir():
        matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name.lower())
        found = matches[0] if matches else None
    if found is not None:
        inner = found / found.name
        if inner.is_dir() and not any(is_image_file(p) for p in found.iterdir()):
            found = inner
    return found


def case_file(folder: Path, stem: str) -> Path | None:
    """folder/<stem>.<image suffix> (any case of suffix), or None."""
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if is_image_file(p) and p.stem.lower() == stem.lower())
    return found[0] if found else None


def pattern_regex(pattern: str, option: str = "mask_pattern") -> re.Pattern[str]:
    if pattern.count("{id}") != 1:
        raise ValueError(f"{option}: {pattern!r} must contain '{{id}}' exactly once (e.g. '{{id}}_segmentation.png')")
    before, after = pattern.split("{id}")
    return re.compile(re.escape(before) + r"(?P<id>.+?)" + re.escape(after) + r"\Z", re.IGNORECASE)


class ScanBuilder:
    """Collects records and problems; keeps the first record of a duplicated id."""

    def __init__(self, dataset: str, root: Path) -> None:
        self.dataset = dataset
        self.root = root
        self.records: dict[str, SampleRecord] = {}
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.unlabelled: list[str] = []

    def add(self, record: SampleRecord, *, mask_expected: bool, expected_mask: Path | None = None,
            across_subsets_hint: str | None = None) -> None:
        """`across_subsets_hint`: what to do when the duplicate is the same id in another subset."""
        first = self.records.get(record.id)
        if first is not None:
            other = f" (subset {first.subset})" if first.subset != record.subset else ""
            hint = f": {across_subsets_hint}" if other and across_subsets_hint else ""
            self.problems.append(Problem(str(record.image_path),
                                         f"duplicate id {record.id}: also {first.image_path}{other}{hint}", record.id))
            return
        self.records[record.id] = record
        if record.mask_path is None and mask_expected:
            where = f" (expected {expected_mask})" if expected_mask is not None else ""
            self.problems.append(Problem(str(record.image_path), f"missing mask{where}", record.id))

    def orphan_masks(self, masks: dict[str, Path]) -> None:
        for mask_id, path in sorted(masks.items()):
            self.problems.append(Problem(str(path), f"mask without image (no image with id {mask_id})"))

    def warn(self, file: str | Path, message: str) -> None:
        self.warnings.append(Problem(str(file), message))

    def finish(self) -> DatasetScan:
        records = [self.records[k] for k in sorted(self.records)]
        problems = sorted(self.problems, key=lambda p: (p.file, p.problem))
        return DatasetScan(self.dataset, self.root, records, problems, self.warnings, sorted(set(self.unlabelled)))


def mask_index(builder: ScanBuilder, mask_dir: Path, regex: re.Pattern[str]) -> dict[str, Path]:
    """mask id -> path for every mask-named image file of `mask_dir`; other images are warned about."""
    out: dict[str, Path] = {}
    for path in image_files(mask_dir):
        m = regex.match(path.name)
        if m is None:
            builder.warn(path, f"ignored: file name does not match the mask pattern {regex.pattern!r}")
            continue
        if m["id"] in out:
            builder.problems.append(Problem(str(path), f"duplicate mask for id {m['id']}: also {out[m['id']]}"))
            continue
        out[m["id"]] = path
    return out


def read_metadata_csv(path: Path, id_column: str, required: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """id -> row (stripped strings) of a comma-, tab- or semicolon-separated table with a header row.

    Raises `DataError` naming the file when it is unreadable or lacks `id_column` or a `required` column.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(path, f"unreadable metadata file: {exc}") from exc
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.DictReader(_io.StringIO(text), dialect=dialect))
    needed = (*required, id_column)
    if not rows or not set(needed) <= set(rows[0]):
        raise DataError(path, f"metadata needs the columns {' and '.join(dict.fromkeys(needed))}")
    return {row[id_column].strip(): {k: (v or "").strip() for k, v in row.items() if k} for row in rows}

"""Images shared between two datasets, so cross-dataset evaluation can leave them out.

ISIC 2018 Task 1 images are a subset of HAM10000's lesions (same ISIC ids, different resolution) and
ISIC 2017 shares images with ISIC 2018. Two images are reported as shared when they have the same id
or byte-identical image files (sha256 of the file; only files of equal size are hashed, so the cost is
small). A re-encoded or resized copy under a new id is not detected: that needs a perceptual hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_lightning.data.records import SampleRecord

__all__ = ["OverlapReport", "find_overlap", "file_sha256"]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class OverlapReport:
    """`shared_ids`: ids present in both; `same_content`: (id in a, id in b) pairs of byte-identical images."""

    num_a: int
    num_b: int
    shared_ids: list[str] = field(default_factory=list)
    same_content: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ids_a(self) -> set[str]:
        """Ids of dataset a shared with b (by id or content): what to exclude from a."""
        return set(self.shared_ids) | {a for a, _ in self.same_content}

    @property
    def ids_b(self) -> set[str]:
        """Ids of dataset b shared with a (by id or content): what to exclude from b."""
        return set(self.shared_ids) | {b for _, b in self.same_content}

    @property
    def num_shared(self) -> int:
        return len(self.ids_b)

    def to_dict(self) -> dict[str, Any]:
        renamed = [[a, b] for a, b in self.same_content if a != b]
        return {
            "num_a": self.num_a,
            "num_b": self.num_b,
            "num_shared": self.num_shared,
            "shared_ids": list(self.shared_ids),
            "same_content": [[a, b] for a, b in self.same_content],
            "same_content_other_id": renamed,
        }


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def find_overlap(
    records_a: Sequence[SampleRecord], records_b: Sequence[SampleRecord], *, by_content: bool = True
) -> OverlapReport:
    """Images of `records_a` and `records_b` that are the same, by id and (optionally) by file content."""
    ids_a = {r.id for r in records_a}
    report = OverlapReport(len(records_a), len(records_b))
    report.shared_ids = sorted(ids_a & {r.id for r in records_b})
    if not by_content:
        return report
    # Only files of a size present on both sides can be identical: hash just those.
    by_size_a: dict[int, list[SampleRecord]] = {}
    for r in records_a:
        s = _size(r.image_path)
        if s is not None:
            by_size_a.setdefault(s, []).append(r)
    hashes_a: dict[str, list[str]] = {}
    hashed_sizes: set[int] = set()
    pairs: set[tuple[str, str]] = set()
    for rb in records_b:
        s = _size(rb.image_path)
        if s is None or s not in by_size_a:
            continue
        if s not in hashed_sizes:
            for ra in by_size_a[s]:
                hashes_a.setdefault(file_sha256(ra.image_path), []).append(ra.id)
            hashed_sizes.add(s)
        for ida in hashes_a.get(file_sha256(rb.image_path), []):
            pairs.add((ida, rb.id))
    report.same_content = sorted(pairs)
    return report

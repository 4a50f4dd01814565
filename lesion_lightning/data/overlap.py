"""Images shared between two datasets, so cross-dataset evaluation can leave them out.

ISIC 2018 Task 1 images are a subset of HAM10000's lesions (same ISIC ids, different resolution) and
ISIC 2017 shares images with ISIC 2018. Two images are reported as shared when they have the same id,
byte-identical image files (sha256 of the file; only files of equal size are hashed), or nearly the
same picture: a perceptual hash (the signs of the 255 lowest DCT frequencies of a 64x64 greyscale
copy, against their median) within `NEAR_DUPLICATE_BITS` bits catches resized and re-encoded copies
under any id. Measured on the 128x128 ISIC 2018 set and the HAM10000 sample: copies resized (x0.5 to
x1.5, or squashed to 128x128) and re-encoded (JPEG quality 60-90) differ by at most 22 bits; among
320,000 pairs of distinct images the closest differ by 48.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_lightning.data.records import SampleRecord

__all__ = ["OverlapReport", "find_overlap", "file_sha256", "perceptual_hash", "NEAR_DUPLICATE_BITS"]

NEAR_DUPLICATE_BITS = 30  # of 255: copies measured <= 22 apart, distinct images >= 48 (module doc)
_HASH_SIDE, _HASH_FREQUENCIES = 64, 16


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class OverlapReport:
    """`shared_ids`: ids present in both; `same_content`: (id in a, id in b) pairs of byte-identical images;
    `near_duplicates`: (id in a, id in b, bits apart) pairs of perceptually equal images not found otherwise."""

    num_a: int
    num_b: int
    shared_ids: list[str] = field(default_factory=list)
    same_content: list[tuple[str, str]] = field(default_factory=list)
    near_duplicates: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def ids_a(self) -> set[str]:
        """Ids of dataset a shared with b (by id, content or near-duplicate): what to exclude from a."""
        return set(self.shared_ids) | {a for a, _ in self.same_content} | {a for a, _, _ in self.near_duplicates}

    @property
    def ids_b(self) -> set[str]:
        """Ids of dataset b shared with a (by id, content or near-duplicate): what to exclude from b."""
        return set(self.shared_ids) | {b for _, b in self.same_content} | {b for _, b, _ in self.near_duplicates}

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
            "near_duplicates": [[a, b, d] for a, b, d in self.near_duplicates],
        }


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def perceptual_hash(path: str | Path) -> np.ndarray | None:
    """255 bits (uint8 0/1) describing what the image looks like, or None when it cannot be read."""
    import cv2
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("L", (2 * _HASH_SIDE, 2 * _HASH_SIDE))  # JPEG: decode at a reduced scale, much faster
            grey = np.asarray(im.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX), np.float32)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    low = cv2.dct(grey)[:_HASH_FREQUENCIES, :_HASH_FREQUENCIES].ravel()[1:]  # without the mean (DC) term
    return (low > np.median(low)).astype(np.uint8)


def _hashes(records: Iterable[SampleRecord]) -> tuple[list[str], np.ndarray]:
    ids, rows = [], []
    for r in records:
        h = perceptual_hash(r.image_path)
        if h is not None:
            ids.append(r.id)
            rows.append(h)
    return ids, np.asarray(rows, np.float32).reshape(len(rows), -1)


def _near_duplicates(records_a: Sequence[SampleRecord], records_b: Sequence[SampleRecord], tolerance: int,
                     known: set[tuple[str, str]]) -> list[tuple[str, str, int]]:
    ids_a, bits_a = _hashes(records_a)
    ids_b, bits_b = _hashes(records_b)
    if not ids_a or not ids_b:
        return []
    signed_a = 2 * bits_a - 1  # +-1: Hamming distance = (n - a.b) / 2, one matrix product per block
    n = signed_a.shape[1]
    found = []
    for start in range(0, len(ids_b), 2048):
        block = 2 * bits_b[start:start + 2048] - 1
        distance = np.rint((n - signed_a @ block.T) / 2).astype(np.int64)
        for i, j in zip(*np.nonzero(distance <= tolerance)):
            pair = (ids_a[i], ids_b[start + j])
            if pair not in known:
                found.append((*pair, int(distance[i, j])))
    return sorted(found)


def find_overlap(
    records_a: Sequence[SampleRecord], records_b: Sequence[SampleRecord], *, by_content: bool = True,
    tolerance: int = NEAR_DUPLICATE_BITS,
) -> OverlapReport:
    """Images of `records_a` and `records_b` that are the same: by id and (`by_content`) by identical file
    content or a perceptual hash within `tolerance` bits (tolerance < 0 leaves the perceptual check out)."""
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
    if tolerance >= 0:
        known = pairs | {(i, i) for i in report.shared_ids}
        report.near_duplicates = _near_duplicates(records_a, records_b, tolerance, known)
    return report

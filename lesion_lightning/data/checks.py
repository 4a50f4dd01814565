"""Dataset validation behind `check-data` and the DataModule's refusal of bad data.

Problems (the data is wrong; `check-data` exits 1, training stops before the first step):
unreadable/truncated image, missing mask, mask without image, mask size != image size, mask not
binary (more than two values; 0/1 and 0/255 masks are fine), empty dataset, duplicate ids.
Warnings (usable, worth knowing): grayscale/RGBA/palette/16-bit images (converted on load), empty
or full masks, ignored files, missing metadata.

Speed: image sizes come from the file header; an image is fully decoded only when its file does
not end like a complete file of its format (JPEG end-of-image marker, PNG IEND chunk, BMP declared
size), or with `decode_images=True`. Masks are always decoded (binarity needs every pixel). Files
are checked on a thread pool (decoders release the GIL). `check_records` can keep a memo of files
already found clean, keyed by path, size and modification time, so a training run does not decode
every mask again when nothing changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lesion_lightning.data.errors import DataError
from lesion_lightning.data.io import load_mask
from lesion_lightning.data.overlap import find_overlap
from lesion_lightning.data.readers import detect_layout, scan_dataset
from lesion_lightning.data.records import DatasetScan, Problem, SampleRecord

__all__ = ["CheckReport", "RecordCheck", "check_dataset", "check_records", "default_workers"]

_MEMO_VERSION = 1
_CONVERSIONS = {
    "L": "grayscale image: replicated to RGB on load",
    "1": "1-bit image: replicated to RGB on load",
    "LA": "grayscale+alpha image: alpha dropped, replicated to RGB on load",
    "RGBA": "RGBA image: alpha channel dropped on load",
    "P": "palette image: converted to RGB on load",
    "PA": "palette+alpha image: converted to RGB on load",
    "CMYK": "CMYK image: converted to RGB on load",
    "I;16": "16-bit image: scaled to 8 bits and replicated to RGB on load",
    "I;16L": "16-bit image: scaled to 8 bits and replicated to RGB on load",
    "I;16B": "16-bit image: scaled to 8 bits and replicated to RGB on load",
    "I": "32-bit integer image: scaled to 8 bits and replicated to RGB on load",
    "F": "floating-point image: clipped to 8 bits and replicated to RGB on load",
}


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class RecordCheck:
    """Result of checking one record: image (H, W), mask coverage, problems and warnings."""

    id: str
    hw: tuple[int, int] | None = None
    coverage: float | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class CheckReport:
    """Summary of a dataset check; `to_dict()` is what `check-data --json` prints."""

    dataset: str
    root: str
    num_images: int = 0
    num_pairs: int = 0
    subsets: dict[str, int] = field(default_factory=dict)
    image_height: tuple[int, int] | None = None  # (min, max)
    image_width: tuple[int, int] | None = None
    mask_coverage: tuple[float, float, float] | None = None  # (min, max, mean) fraction of lesion pixels
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    overlap: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        cov = self.mask_coverage
        return {
            "dataset": self.dataset,
            "root": self.root,
            "ok": self.ok,
            "num_images": self.num_images,
            "num_pairs": self.num_pairs,
            "subsets": dict(self.subsets),
            "image_height": list(self.image_height) if self.image_height else None,
            "image_width": list(self.image_width) if self.image_width else None,
            "mask_coverage": None if cov is None else {"min": cov[0], "max": cov[1], "mean": cov[2]},
            "num_problems": len(self.problems),
            "problems": [p.to_dict() for p in self.problems],
            "num_warnings": len(self.warnings),
            "warnings": [w.to_dict() for w in self.warnings],
            **({"overlap": self.overlap} if self.overlap is not None else {}),
        }


# ----------------------------------------------------------------------------------------------
# one record


def _looks_complete(path: Path, fmt: str | None) -> bool:
    """Cheap end-of-file test; False means "decode it to be sure", not "broken"."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(6)
            fh.seek(max(0, size - 64))
            tail = fh.read()
    except OSError:
        return False
    if fmt == "JPEG":
        return tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if fmt == "PNG":
        return b"IEND" in tail[-16:]
    if fmt == "BMP":
        declared = int.from_bytes(head[2:6], "little")
        return 0 < declared <= size
    return False


def _check_image(record: SampleRecord, decode: bool, out: RecordCheck) -> None:
    path = record.image_path
    try:
        with Image.open(path) as im:
            w, h = im.size
            mode, fmt = im.mode, im.format
    except FileNotFoundError:
        out.problems.append(Problem(str(path), "image file not found", record.id))
        return
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        out.problems.append(Problem(str(path), f"unreadable or truncated image: {exc}", record.id))
        return
    if decode or not _looks_complete(path, fmt):
        # Full decode by Pillow (strict about truncation by default) without load_image's
        # conversion warnings: those are reported below from the header, and the warnings
        # filters are process-global, so they cannot be silenced per thread.
        try:
            with Image.open(path) as im:
                im.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            out.problems.append(Problem(str(path), f"unreadable or truncated image: {exc}", record.id))
            return
    if mode != "RGB":
        out.warnings.append(Problem(str(path), _CONVERSIONS.get(mode, f"{mode} image: converted to RGB on load"),
                                    record.id))
    out.hw = (int(h), int(w))


def _check_mask(record: SampleRecord, out: RecordCheck) -> None:
    if record.mask_path is None or out.hw is None:
        return
    try:
        mask = load_mask(record.mask_path, expected_hw=out.hw, encoding=record.mask_encoding)
    except DataError as exc:
        out.problems.append(Problem(exc.file, exc.problem, record.id))
        return
    out.coverage = float(mask.mean()) if mask.size else 0.0
    if out.coverage == 0.0:
        out.warnings.append(Problem(str(record.mask_path), "empty mask: no lesion pixel", record.id))
    elif out.coverage == 1.0:
        out.warnings.append(Problem(str(record.mask_path), "mask covers the whole image", record.id))


def check_record(record: SampleRecord, *, decode_images: bool = False) -> RecordCheck:
    """Header (and, when needed, full decode) of the image; full decode and validation of the mask."""
    out = RecordCheck(record.id)
    _check_image(record, decode_images, out)
    _check_mask(record, out)
    return out


# ----------------------------------------------------------------------------------------------
# many records, with an optional memo of clean files


def _stamp(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        st = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _memo_key(record: SampleRecord, decode_images: bool) -> str:
    text = f"v{_MEMO_VERSION}|{int(decode_images)}|{_stamp(record.image_path)}|{_stamp(record.mask_path)}"
    if record.mask_encoding != "auto":  # auto keys stay those written before encodings existed
        text += f"|{record.mask_encoding}"
    return hashlib.sha1(text.encode()).hexdigest()


def _load_memo(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_memo(path: Path, memo: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo))
        tmp.replace(path)  # atomic: concurrent runs never read a half-written memo
    except OSError as exc:  # a read-only or full cache folder only costs the memo, never the check
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        warnings.warn(f"{path}: check memo not written ({exc.strerror or exc}); files are checked again next time",
                      UserWarning, stacklevel=3)


def check_records(
    records: Sequence[SampleRecord],
    *,
    decode_images: bool = False,
    workers: int | None = None,
    memo_path: str | Path | None = None,
) -> list[RecordCheck]:
    """Check every record (see `check_record`), in `records` order.

    With `memo_path`, records found clean before (same paths, sizes and modification times) are not
    decoded again, and newly clean ones are added to the memo file.
    """
    memo: dict[str, Any] = _load_memo(Path(memo_path)) if memo_path is not None else {}
    keys = [_memo_key(r, decode_images) for r in records] if memo_path is not None else [None] * len(records)
    results: list[RecordCheck | None] = [None] * len(records)
    todo: list[int] = []
    for i, (r, key) in enumerate(zip(records, keys)):
        hit = memo.get(key) if key is not None else None
        if hit is not None:
            results[i] = RecordCheck(r.id, tuple(hit["hw"]), hit["coverage"], [],
                                     [Problem(f, p, r.id) for f, p in hit.get("warnings", [])])
        else:
            todo.append(i)
    n_workers = workers or default_workers()
    if todo:
        if n_workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(n_workers) as pool:
                checked = list(pool.map(lambda i: check_record(records[i], decode_images=decode_images), todo))
        else:
            checked = [check_record(records[i], decode_images=decode_images) for i in todo]
        for i, result in zip(todo, checked):
            results[i] = result
    if memo_path is not None and todo:
        for i in todo:
            res = results[i]
            if res is not None and not res.problems and res.hw is not None and records[i].mask_path is not None:
                memo[keys[i]] = {"hw": list(res.hw), "coverage": res.coverage,
                                 "warnings": [[w.file, w.problem] for w in res.warnings]}
        _save_memo(Path(memo_path), memo)
    return [r for r in results if r is not None]


# ----------------------------------------------------------------------------------------------
# a whole dataset


def summarise(dataset: str, root: str | Path, scan: DatasetScan | None, checks: Sequence[RecordCheck]) -> CheckReport:
    report = CheckReport(dataset, str(root))
    if scan is None:
        return report
    report.num_images = len(scan.records)
    report.num_pairs = sum(r.mask_path is not None for r in scan.records)
    counts: dict[str, int] = {}
    for r in scan.records:
        counts[r.subset or "all"] = counts.get(r.subset or "all", 0) + 1
    report.subsets = counts
    sizes = [c.hw for c in checks if c.hw is not None]
    if sizes:
        report.image_height = (min(h for h, _ in sizes), max(h for h, _ in sizes))
        report.image_width = (min(w for _, w in sizes), max(w for _, w in sizes))
    cov = [c.coverage for c in checks if c.coverage is not None]
    if cov:
        report.mask_coverage = (min(cov), max(cov), sum(cov) / len(cov))
    problems = list(scan.problems) + [p for c in checks for p in c.problems]
    report.problems = sorted(problems, key=lambda p: (p.file, p.problem))
    report.warnings = list(scan.warnings) + [w for c in checks for w in c.warnings]
    return report


def check_dataset(
    name: str,
    root: str | Path,
    *,
    subsets: Sequence[str] | None = None,
    against: str | Path | None = None,
    against_dataset: str | None = None,
    decode_images: bool = False,
    workers: int | None = None,
    **options: Any,
) -> CheckReport:
    """Validate dataset `name` under `root` (see module doc); never raises for bad data, it reports it.

    `against`: root of another dataset (layout `against_dataset`, detected when None) whose shared
    images (same id or identical file) are listed in `report.overlap` and summarised as a warning.
    `options`: the `folder` reader's options.
    """
    try:
        scan = scan_dataset(name, root, subsets=subsets, **options)
    except DataError as exc:
        report = CheckReport(name, str(root))
        report.problems = [Problem(exc.file, exc.problem)]
        return report
    checks = check_records(scan.records, decode_images=decode_images, workers=workers)
    report = summarise(name, root, scan, checks)
    if against is not None:
        other_name = against_dataset or detect_layout(against)
        if other_name is None:
            raise DataError(against, "cannot tell which dataset layout this is; give --against-dataset")
        other = scan_dataset(other_name, against)
        overlap = find_overlap(scan.records, other.records)
        report.overlap = {"dataset": other_name, "root": str(against), **overlap.to_dict()}
        if overlap.num_shared:
            report.warnings.append(Problem(
                str(against),
                f"{overlap.num_shared} image(s) shared with {other_name} ({len(overlap.shared_ids)} by id, "
                f"{len(overlap.same_content)} byte-identical, {len(overlap.near_duplicates)} resized or re-encoded "
                "copies): exclude them from cross-dataset evaluation",
            ))
    return report

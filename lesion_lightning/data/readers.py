"""Dataset readers: the official folder layouts of ISIC 2018, ISIC 2017, HAM10000 and PH2, and `folder`.

Every reader walks the folders only (no pixel is decoded) and returns a `DatasetScan`: records sorted
by id, plus the structural problems met on the way (missing mask, mask without image, duplicate id).
`read_dataset` returns just the records. Non-image files (LICENSE.txt, ATTRIBUTION.txt, csv files,
.DS_Store and other hidden files) are ignored. Results never depend on the filesystem's listing order.

Layouts (root = the folder given with --root):

- ``isic2018``: ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_xxxxxxx.jpg`` and
  ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_xxxxxxx_segmentation.png``.
- ``isic2017``: ``ISIC-2017_{Training,Validation,Test_v2}_Data/ISIC_xxxxxxx.jpg`` (the
  ``_superpixels.png`` files beside them are skipped) and
  ``ISIC-2017_{Training,Validation,Test_v2}_Part1_GroundTruth/ISIC_xxxxxxx_segmentation.png``.
- ``ham10000``: ``HAM10000_images_part_1/`` + ``HAM10000_images_part_2/`` (or one ``HAM10000_images/``),
  masks in ``HAM10000_segmentations_lesion_tschandl/ISIC_xxxxxxx_segmentation.png``, and
  ``HAM10000_metadata.csv``: each record carries its row (lesion_id, dx, ...) and groups by lesion_id.
- ``ph2``: ``PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` and
  ``IMDxxx_lesion/IMDxxx_lesion.bmp``; the root may be the folder holding ``PH2Dataset``,
  ``PH2Dataset`` itself or ``PH2 Dataset images``. ``PH2_dataset.txt`` (tab-separated or the original
  ``||``-separated table) gives each case's clinical diagnosis when present.
- ``folder``: ``<image_dir>/<id>.<ext>`` + ``<mask_dir>/<mask_pattern>`` (defaults ``images``,
  ``masks``, ``{id}_segmentation.png``).

An official subset whose ground-truth folder is absent (e.g. an ISIC test set downloaded without its
masks) gives records with ``mask_path=None`` and a warning, not a problem: such images can still be
predicted. A mask missing inside a ground-truth folder that exists is a problem.
"""

from __future__ import annotations

import csv
import io as _io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lesion_lightning.data.errors import DataError
from lesion_lightning.data.records import DatasetScan, Problem, SampleRecord

__all__ = [
    "DATASETS",
    "SUBSETS",
    "ISIC2018_FOLDERS",
    "ISIC2017_FOLDERS",
    "PH2_DIAGNOSES",
    "read_dataset",
    "scan_dataset",
    "detect_layout",
    "read_ph2_diagnoses",
]

DATASETS = ("isic2018", "isic2017", "ham10000", "ph2", "folder")
SUBSETS = ("train", "val", "test")

# File name endings treated as images (lower case); everything else is ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# subset -> (image folder, ground-truth folder), the names inside the official archives.
ISIC2018_FOLDERS = {
    "train": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
    "val": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
    "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
}
ISIC2017_FOLDERS = {
    "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
    "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
}
ISIC_MASK_PATTERN = "{id}_segmentation.png"

HAM_IMAGE_FOLDERS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
HAM_MASK_FOLDER = "HAM10000_segmentations_lesion_tschandl"
HAM_METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata", "HAM10000_metadata.tab")

PH2_IMAGES_FOLDER = "PH2 Dataset images"
PH2_BASE_FOLDER = "PH2Dataset"
PH2_TABLE = "PH2_dataset.txt"
# Clinical Diagnosis codes of PH2_dataset.txt
PH2_DIAGNOSES = {0: "common nevus", 1: "atypical nevus", 2: "melanoma"}

FOLDER_DEFAULTS = {"image_dir": "images", "mask_dir": "masks", "mask_pattern": "{id}_segmentation.png"}


# ----------------------------------------------------------------------------------------------
# public API


def read_dataset(
    name: str, root: str | Path, *, subsets: Sequence[str] | None = None, **options: Any
) -> list[SampleRecord]:
    """Records of dataset `name` under `root`, sorted by id.

    `subsets` restricts the official subsets read (ISIC only); `options` are the `folder` reader's
    `image_dir`, `mask_dir`, `mask_pattern`. Raises `DataError` naming the root when it does not
    exist or holds no image in the expected layout. Structural problems (missing masks, masks
    without image, duplicate ids) do not raise here: see `scan_dataset` and `check_dataset`.
    """
    return scan_dataset(name, root, subsets=subsets, **options).records


def scan_dataset(
    name: str, root: str | Path, *, subsets: Sequence[str] | None = None, **options: Any
) -> DatasetScan:
    """Walk the dataset folders: records plus structural problems and warnings (see module doc)."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, f"dataset root not found (expected a {name} folder)")
    allowed = set(FOLDER_DEFAULTS) if name == "folder" else set()
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown reader option(s) {unknown} for dataset {name!r}"
            + (f"; allowed: {sorted(allowed)}" if allowed else " (it takes none)")
        )
    if subsets is not None:
        bad = [s for s in subsets if s not in SUBSETS]
        if bad:
            raise ValueError(f"subsets: unknown subset(s) {bad}; use {', '.join(SUBSETS)}")
        if name not in ("isic2018", "isic2017"):
            raise ValueError(f"subsets: dataset {name!r} has no official subsets")
    builder = _Builder(name, root)
    if name == "isic2018":
        _scan_isic(builder, ISIC2018_FOLDERS, subsets, skip=lambda p: False)
    elif name == "isic2017":
        _scan_isic(builder, ISIC2017_FOLDERS, subsets, skip=lambda p: p.stem.lower().endswith("_superpixels"))
    elif name == "ham10000":
        _scan_ham10000(builder)
    elif name == "ph2":
        _scan_ph2(builder)
    else:
        _scan_folder(builder, **{**FOLDER_DEFAULTS, **options})
    scan = builder.finish()
    if not scan.records:
        raise DataError(root, f"empty dataset: no image found in the {name} layout ({_LAYOUT_HINTS[name]})")
    return scan


def detect_layout(root: str | Path) -> str | None:
    """Which of DATASETS the folder looks like (by its official folder names), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    files = {p.name.lower() for p in root.iterdir() if p.is_file()}
    if any(n.lower() in names for pair in ISIC2018_FOLDERS.values() for n in pair):
        return "isic2018"
    if any(n.lower() in names for pair in ISIC2017_FOLDERS.values() for n in pair):
        return "isic2017"
    if any(n.lower() in names for n in (*HAM_IMAGE_FOLDERS, HAM_MASK_FOLDER)) or "ham10000_metadata.csv" in files:
        return "ham10000"
    if _ph2_images_dir(root) is not None:
        return "ph2"
    if {"images", "masks"} <= names:
        return "folder"
    return None


def read_ph2_diagnoses(path: str | Path) -> dict[str, dict[str, Any]]:
    """Case name -> {"clinical_diagnosis": code, "diagnosis": name[, "histological_diagnosis"]}.

    Reads both the tab-separated reduced table and the original ``|| a || b ||`` table; rows that
    are not cases (legends, blank lines) are ignored. Raises `DataError` when no header is found.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise DataError(path, f"unreadable PH2 table: {exc}") from exc
    columns: dict[str, int] | None = None
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if "||" in line:
            cells = [c.strip() for c in line.split("||")]
            cells = cells[1:] if cells and not cells[0] else cells
            cells = cells[:-1] if cells and not cells[-1] else cells
        else:
            cells = [c.strip() for c in line.split("\t")]
        if columns is None:
            lowered = [c.lower() for c in cells]
            if "name" in lowered and any("clinical diagnosis" in c for c in lowered):
                columns = {
                    "name": lowered.index("name"),
                    "clinical": next(i for i, c in enumerate(lowered) if "clinical diagnosis" in c),
                }
                hist = [i for i, c in enumerate(lowered) if "histological" in c]
                if hist:
                    columns["histological"] = hist[0]
            continue
        if len(cells) <= columns["name"] or not re.fullmatch(r"IMD\d+", cells[columns["name"]]):
            continue
        entry: dict[str, Any] = {}
        code = cells[columns["clinical"]] if len(cells) > columns["clinical"] else ""
        if code.isdigit():
            entry["clinical_diagnosis"] = int(code)
            entry["diagnosis"] = PH2_DIAGNOSES.get(int(code), f"code {code}")
        if "histological" in columns and len(cells) > columns["histological"] and cells[columns["histological"]]:
            entry["histological_diagnosis"] = cells[columns["histological"]]
        out[cells[columns["name"]]] = entry
    if columns is None:
        raise DataError(path, "no header row with 'Name' and 'Clinical Diagnosis' columns")
    return out


# ----------------------------------------------------------------------------------------------
# helpers

_LAYOUT_HINTS = {
    "isic2018": "ISIC2018_Task1-2_Training_Input/ + ISIC2018_Task1_Training_GroundTruth/, likewise Validation/Test",
    "isic2017": "ISIC-2017_Training_Data/ + ISIC-2017_Training_Part1_GroundTruth/, likewise Validation/Test_v2",
    "ham10000": "HAM10000_images_part_1/, HAM10000_images_part_2/, HAM10000_segmentations_lesion_tschandl/",
    "ph2": "PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp",
    "folder": "images/ + masks/ (see --image-dir, --mask-dir, --mask-pattern)",
}


def _is_image_file(path: Path) -> bool:
    # Hidden files include macOS '._x.jpg' resource forks, which carry an image suffix.
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _is_image_file(p)), key=lambda p: p.name)


def _find_dir(parent: Path, name: str) -> Path | None:
    """parent/name, matched case-insensitively when the exact name is absent; an archive that
    extracted into a same-named subfolder (name/name/) is followed one level down."""
    exact = parent / name
    found = exact if exact.is_dir() else None
    if found is None and parent.is_dir():
        matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name.lower())
        found = matches[0] if matches else None
    if found is not None:
        inner = found / found.name
        if inner.is_dir() and not any(_is_image_file(p) for p in found.iterdir()):
            found = inner
    return found


def _pattern_regex(pattern: str, option: str = "mask_pattern") -> re.Pattern[str]:
    if pattern.count("{id}") != 1:
        raise ValueError(f"{option}: {pattern!r} must contain '{{id}}' exactly once (e.g. '{{id}}_segmentation.png')")
    before, after = pattern.split("{id}")
    return re.compile(re.escape(before) + r"(?P<id>.+?)" + re.escape(after) + r"\Z", re.IGNORECASE)


class _Builder:
    """Collects records and problems; keeps the first record of a duplicated id."""

    def __init__(self, dataset: str, root: Path) -> None:
        self.dataset = dataset
        self.root = root
        self.records: dict[str, SampleRecord] = {}
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.unlabelled: list[str] = []

    def add(self, record: SampleRecord, *, mask_expected: bool, expected_mask: Path | None = None) -> None:
        first = self.records.get(record.id)
        if first is not None:
            self.problems.append(Problem(str(record.image_path), f"duplicate id {record.id}: also {first.image_path}",
                                         record.id))
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


def _mask_index(builder: _Builder, mask_dir: Path, regex: re.Pattern[str]) -> dict[str, Path]:
    """mask id -> path for every mask-named image file of `mask_dir`; other images are warned about."""
    out: dict[str, Path] = {}
    for path in _image_files(mask_dir):
        m = regex.match(path.name)
        if m is None:
            builder.warn(path, f"ignored: file name does not match the mask pattern {regex.pattern!r}")
            continue
        if m["id"] in out:
            builder.problems.append(Problem(str(path), f"duplicate mask for id {m['id']}: also {out[m['id']]}"))
            continue
        out[m["id"]] = path
    return out


# ----------------------------------------------------------------------------------------------
# readers


def _scan_isic(
    builder: _Builder, folders: dict[str, tuple[str, str]], subsets: Sequence[str] | None, skip: Callable[[Path], bool]
) -> None:
    regex = _pattern_regex(ISIC_MASK_PATTERN)
    for subset in SUBSETS if subsets is None else [s for s in SUBSETS if s in subsets]:
        image_name, gt_name = folders[subset]
        image_dir, gt_dir = _find_dir(builder.root, image_name), _find_dir(builder.root, gt_name)
        if image_dir is None:
            if subsets is not None:
                raise DataError(builder.root / image_name,
                                f"subset {subset!r} requested but its image folder is missing")
            if gt_dir is not None:
                builder.orphan_masks(_mask_index(builder, gt_dir, regex))
            continue
        masks = _mask_index(builder, gt_dir, regex) if gt_dir is not None else {}
        images = [p for p in _image_files(image_dir) if not skip(p)]
        if gt_dir is None and images:
            builder.unlabelled.append(subset)
            builder.warn(builder.root / gt_name,
                         f"ground-truth folder not found: the {len(images)} {subset} images are usable "
                         "for prediction only")
        for path in images:
            image_id = path.stem
            mask = masks.pop(image_id, None)
            builder.add(SampleRecord(image_id, path, mask, subset, image_id, {}),
                        mask_expected=gt_dir is not None,
                        expected_mask=None if gt_dir is None else gt_dir / ISIC_MASK_PATTERN.format(id=image_id))
        builder.orphan_masks(masks)


def _read_ham_metadata(builder: _Builder) -> dict[str, dict[str, str]] | None:
    path = next((p for n in HAM_METADATA_NAMES if (p := builder.root / n).is_file()), None)
    if path is None:
        builder.warn(builder.root / HAM_METADATA_NAMES[0],
                     "metadata file not found: no lesion_id/dx; splits group by image id, so images of one lesion "
                     "may land in different subsets")
        return None
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.DictReader(_io.StringIO(text), dialect=dialect))
    if not rows or not {"lesion_id", "image_id"} <= set(rows[0]):
        raise DataError(path, "HAM10000 metadata needs the columns lesion_id and image_id")
    return {row["image_id"].strip(): {k: (v or "").strip() for k, v in row.items() if k} for row in rows}


def _scan_ham10000(builder: _Builder) -> None:
    regex = _pattern_regex(ISIC_MASK_PATTERN)
    mask_dir = _find_dir(builder.root, HAM_MASK_FOLDER)
    masks = _mask_index(builder, mask_dir, regex) if mask_dir is not None else {}
    metadata = _read_ham_metadata(builder)
    images = [p for name in HAM_IMAGE_FOLDERS if (d := _find_dir(builder.root, name)) is not None
              for p in _image_files(d)]
    if mask_dir is None and images:
        builder.problems.append(Problem(str(builder.root / HAM_MASK_FOLDER),
                                        f"mask folder not found: {len(images)} images have no mask"))
    for path in images:
        image_id = path.stem
        row = dict(metadata.get(image_id, {})) if metadata is not None else {}
        if metadata is not None and not row:
            builder.warn(path, "no row in HAM10000_metadata.csv: grouped by its image id")
        row.pop("image_id", None)
        group = row.get("lesion_id") or image_id
        builder.add(SampleRecord(image_id, path, masks.pop(image_id, None), None, group, row),
                    mask_expected=mask_dir is not None,
                    expected_mask=None if mask_dir is None else mask_dir / ISIC_MASK_PATTERN.format(id=image_id))
    builder.orphan_masks(masks)


def _ph2_images_dir(root: Path) -> Path | None:
    if root.name.lower() == PH2_IMAGES_FOLDER.lower() and root.is_dir():
        return root
    for parent in (root, root / PH2_BASE_FOLDER):
        found = _find_dir(parent, PH2_IMAGES_FOLDER) if parent.is_dir() else None
        if found is not None:
            return found
    return None


def _case_file(folder: Path, stem: str) -> Path | None:
    """folder/<stem>.<image suffix> (any case of suffix), or None."""
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if _is_image_file(p) and p.stem.lower() == stem.lower())
    return found[0] if found else None


def _scan_ph2(builder: _Builder) -> None:
    images_dir = _ph2_images_dir(builder.root)
    if images_dir is None:
        return
    table = next((p for p in (images_dir.parent / PH2_TABLE, builder.root / PH2_TABLE,
                              builder.root / PH2_BASE_FOLDER / PH2_TABLE) if p.is_file()), None)
    diagnoses: dict[str, dict[str, Any]] = {}
    if table is not None:
        try:
            diagnoses = read_ph2_diagnoses(table)
        except DataError as exc:  # the images are still usable without their diagnoses
            builder.warn(exc.file, f"{exc.problem}: records carry no diagnosis")
            table = None
    else:
        builder.warn(images_dir.parent / PH2_TABLE, "PH2_dataset.txt not found: records carry no diagnosis")
    cases = sorted(p for p in images_dir.iterdir() if p.is_dir() and re.fullmatch(r"IMD\d+", p.name))
    for case_dir in cases:
        case = case_dir.name
        image = _case_file(case_dir / f"{case}_Dermoscopic_Image", case)
        mask = _case_file(case_dir / f"{case}_lesion", f"{case}_lesion")
        if image is None:
            if mask is not None:
                builder.orphan_masks({case: mask})
            else:
                builder.warn(case_dir, "case folder without a dermoscopic image: ignored")
            continue
        meta = dict(diagnoses.get(case, {}))
        if table is not None and case not in diagnoses:
            builder.warn(image, f"no row for {case} in {table.name}")
        builder.add(SampleRecord(case, image, mask, None, case, meta), mask_expected=True,
                    expected_mask=case_dir / f"{case}_lesion" / f"{case}_lesion.bmp")


def _scan_folder(builder: _Builder, image_dir: str, mask_dir: str, mask_pattern: str) -> None:
    regex = _pattern_regex(mask_pattern)
    images_path = builder.root / image_dir
    masks_path = builder.root / mask_dir
    if not images_path.is_dir():
        raise DataError(images_path, "image folder not found (folder dataset option image_dir)")
    masks = _mask_index(builder, masks_path, regex) if masks_path.is_dir() else {}
    images = _image_files(images_path)
    if not masks_path.is_dir() and images:
        builder.problems.append(Problem(str(masks_path), f"mask folder not found: {len(images)} images have no mask"))
    same_folder = images_path.resolve() == masks_path.resolve()
    for path in images:
        if same_folder and regex.match(path.name):  # images and masks share one folder
            continue
        image_id = path.stem
        builder.add(SampleRecord(image_id, path, masks.pop(image_id, None), None, image_id, {}),
                    mask_expected=masks_path.is_dir(), expected_mask=masks_path / mask_pattern.format(id=image_id))
    builder.orphan_masks(masks)

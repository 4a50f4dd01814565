"""PH2: ``PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` and
``IMDxxx_lesion/IMDxxx_lesion.bmp`` (200 cases); the root may be the folder holding ``PH2Dataset``,
``PH2Dataset`` itself or ``PH2 Dataset images``. ``PH2_dataset.txt`` (tab-separated or the original
``||``-separated table) gives each case's clinical diagnosis when present. Distributed by its
authors as a RAR archive linked from the ADDI project page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets.registry import Archive, DatasetSpec, register_dataset
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.layout import ScanBuilder, case_file, find_dir
from lesion_lightning.data.records import SampleRecord

IMAGES_FOLDER = "PH2 Dataset images"
BASE_FOLDER = "PH2Dataset"
TABLE = "PH2_dataset.txt"
URL = "https://www.dropbox.com/s/k88qukc20ljnbuo/PH2Dataset.rar?dl=1"  # linked from fc.up.pt/addi
# Clinical Diagnosis codes of PH2_dataset.txt
DIAGNOSES = {0: "common nevus", 1: "atypical nevus", 2: "melanoma"}


def images_dir(root: Path) -> Path | None:
    if root.name.lower() == IMAGES_FOLDER.lower() and root.is_dir():
        return root
    for parent in (root, root / BASE_FOLDER):
        found = find_dir(parent, IMAGES_FOLDER) if parent.is_dir() else None
        if found is not None:
            return found
    return None


def _table_cells(line: str) -> list[str]:
    if "||" not in line:
        return [c.strip() for c in line.split("\t")]
    cells = [c.strip() for c in line.split("||")]
    cells = cells[1:] if cells and not cells[0] else cells
    return cells[:-1] if cells and not cells[-1] else cells


def _header_columns(cells: list[str]) -> dict[str, int] | None:
    lowered = [c.lower() for c in cells]
    if "name" not in lowered or not any("clinical diagnosis" in c for c in lowered):
        return None
    columns = {"name": lowered.index("name"),
               "clinical": next(i for i, c in enumerate(lowered) if "clinical diagnosis" in c)}
    hist = [i for i, c in enumerate(lowered) if "histological" in c]
    if hist:
        columns["histological"] = hist[0]
    return columns


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
        cells = _table_cells(line)
        if columns is None:
            columns = _header_columns(cells)
            continue
        if len(cells) <= columns["name"] or not re.fullmatch(r"IMD\d+", cells[columns["name"]]):
            continue
        entry: dict[str, Any] = {}
        code = cells[columns["clinical"]] if len(cells) > columns["clinical"] else ""
        if code.isdigit():
            entry["clinical_diagnosis"] = int(code)
            entry["diagnosis"] = DIAGNOSES.get(int(code), f"code {code}")
        if "histological" in columns and len(cells) > columns["histological"] and cells[columns["histological"]]:
            entry["histological_diagnosis"] = cells[columns["histological"]]
        out[cells[columns["name"]]] = entry
    if columns is None:
        raise DataError(path, "no header row with 'Name' and 'Clinical Diagnosis' columns")
    return out


def _diagnoses(builder: ScanBuilder, folder: Path) -> tuple[dict[str, dict[str, Any]], Path | None]:
    table = next((p for p in (folder.parent / TABLE, builder.root / TABLE, builder.root / BASE_FOLDER / TABLE)
                  if p.is_file()), None)
    if table is None:
        builder.warn(folder.parent / TABLE, "PH2_dataset.txt not found: records carry no diagnosis")
        return {}, None
    try:
        return read_ph2_diagnoses(table), table
    except DataError as exc:  # the images are still usable without their diagnoses
        builder.warn(exc.file, f"{exc.problem}: records carry no diagnosis")
        return {}, None


def _scan(builder: ScanBuilder, subsets: list[str] | None, options: dict) -> None:
    folder = images_dir(builder.root)
    if folder is None:
        return
    diagnoses, table = _diagnoses(builder, folder)
    cases = sorted(p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"IMD\d+", p.name))
    for case_dir in cases:
        case = case_dir.name
        image = case_file(case_dir / f"{case}_Dermoscopic_Image", case)
        mask = case_file(case_dir / f"{case}_lesion", f"{case}_lesion")
        if image is None:
            if mask is not None:
                builder.orphan_masks({case: mask})
            else:
                builder.warn(case_dir, "case folder without a dermoscopic image: ignored")
            continue
        if table is not None and case not in diagnoses:
            builder.warn(image, f"no row for {case} in {table.name}")
        builder.add(SampleRecord(case, image, mask, None, case, dict(diagnoses.get(case, {}))), mask_expected=True,
                    expected_mask=case_dir / f"{case}_lesion" / f"{case}_lesion.bmp")


_META = 4  # synthetic random stream of the case numbers and diagnoses (0 draws the images)


def _write(root: Path, counts: dict[str, int], seed: int, hw: tuple[int, int]) -> None:
    """24-bit BMP images, 1-bit BMP masks and a tab-separated `PH2_dataset.txt`; like the real PH2,
    sizes vary by up to 2 pixels per case."""
    import numpy as np
    from PIL import Image

    from lesion_lightning.data import synthetic_draw as syn

    n = counts["train"]
    if n > 998:
        raise ValueError(f"num_images: PH2 ids are IMD002..IMD999, at most 998 images (got {n})")
    id_rng = syn.image_rng(seed, 0, _META)
    pool = np.arange(2, 438) if n <= 436 else np.arange(2, 1000)  # real ids run IMD002..IMD437
    numbers = sorted(id_rng.choice(pool, size=n, replace=False).tolist())
    base = root / BASE_FOLDER
    lines = ["Name\tClinical Diagnosis\tAsymmetry"]
    for i, number in enumerate(numbers):
        case = f"IMD{number:03d}"
        rng = syn.image_rng(seed, i)
        size = (hw[0] - int(rng.integers(0, 3)), hw[1] - int(rng.integers(0, 3)))
        image, mask = syn.make_sample(rng, size)
        case_dir = base / IMAGES_FOLDER / case
        (case_dir / f"{case}_Dermoscopic_Image").mkdir(parents=True, exist_ok=True)
        (case_dir / f"{case}_lesion").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(case_dir / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
        one_bit = Image.fromarray((mask * 255).astype(np.uint8)).convert("1", dither=Image.Dither.NONE)
        one_bit.save(case_dir / f"{case}_lesion" / f"{case}_lesion.bmp")
        # 0 common nevus, 1 atypical nevus, 2 melanoma (80/80/40 in the real set)
        lines.append(f"{case}\t{int(id_rng.choice([0, 0, 1, 1, 2]))}\t{int(id_rng.integers(0, 3))}")
    # The real file is CRLF text with legend rows after the table.
    lines += ["\t\t", "Legends for Clinical Diagnosis:\t\t", "0 - Common Nevus\t\t", "1 - Atypical Nevus\t\t",
              "2 - Melanoma\t\t"]
    (base / TABLE).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    (base / "Readme.txt").write_text("Synthetic PH2-layout data generated by lesion-lightning.\n")


SPEC = register_dataset(DatasetSpec(
    name="ph2",
    label="PH2",
    layout="PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp",
    scan=_scan,
    write_synthetic=_write,
    detect=lambda root: images_dir(root) is not None,
    archives=(Archive("PH2Dataset.rar", URL),),
    sample_folder="ph2",
))

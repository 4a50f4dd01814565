"""HAM10000 as resized and redistributed in the public repository mmalek06/bounding-box-detection-ham1000:
all 10015 images at 200x150 (``data/images/ISIC_*.jpg``), the Tschandl lesion masks resized to match
(``data/masks_200x150/ISIC_*_segmentation.png``, grey levels from interpolation: read with a threshold,
lesion > 127) and ``HAM10000_metadata.csv`` (images of one lesion_id stay in one split subset). Point the
root at the copy's ``data/`` folder. The folder reader with fixed options; nothing else is needed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets import folder, ham10000
from lesion_lightning.data.datasets.registry import DatasetSpec, register_dataset
from lesion_lightning.data.layout import ScanBuilder

OPTIONS = {**folder.OPTIONS, "image_dir": "images", "mask_dir": "masks_200x150",
           "metadata": ham10000.METADATA_NAMES[0], "group_column": ham10000.GROUP_COLUMN, "mask_encoding": "threshold"}


def _scan(builder: ScanBuilder, subsets: list[str] | None, options: dict[str, Any]) -> None:
    folder.scan_folder(builder, subsets, OPTIONS)


def _write(root: Path, counts: dict[str, int], seed: int, hw: tuple[int, int]) -> None:
    """HAM10000's synthetic stand-in, its folders laid out as this copy's."""
    ham10000.SPEC.write_synthetic(root, counts, seed, hw)
    (root / "images").mkdir(exist_ok=True)
    for part in (root / name for name in ham10000.IMAGE_FOLDERS if (root / name).is_dir()):
        for path in sorted(part.glob("*.jpg")):
            path.rename(root / "images" / path.name)
        shutil.rmtree(part)
    (root / ham10000.MASK_FOLDER).rename(root / "masks_200x150")


SPEC = register_dataset(DatasetSpec(
    name="ham10000_200",
    label="HAM10000 (200x150 redistribution)",
    layout="images/ISIC_*.jpg + masks_200x150/ISIC_*_segmentation.png + HAM10000_metadata.csv",
    scan=_scan,
    write_synthetic=_write,
    detect=lambda root: (root / "images").is_dir() and (root / "masks_200x150").is_dir(),
    group_by=ham10000.GROUP_COLUMN,
    synthetic_images=ham10000.SPEC.synthetic_images,
))

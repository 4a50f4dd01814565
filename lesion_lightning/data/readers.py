"""Read a dataset by name: its registered reader walks the folders (no pixel is decoded).

`scan_dataset` returns a `DatasetScan`: records sorted by id, plus the structural problems met on the
way (missing mask, mask without image, duplicate id). `read_dataset` returns just the records.
The layouts themselves live in `lesion_lightning.data.datasets` (one module per dataset).

An official subset whose ground-truth folder is absent (e.g. an ISIC test set downloaded without its
masks) gives records with ``mask_path=None`` and a warning, not a problem: such images can still be
predicted. A mask missing inside a ground-truth folder that exists is a problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets import SUBSETS, get_dataset_spec, list_datasets
from lesion_lightning.data.datasets.folder import OPTIONS as FOLDER_DEFAULTS
from lesion_lightning.data.datasets.isic2017 import FOLDERS as ISIC2017_FOLDERS
from lesion_lightning.data.datasets.isic2018 import FOLDERS as ISIC2018_FOLDERS
from lesion_lightning.data.datasets.ph2 import DIAGNOSES as PH2_DIAGNOSES
from lesion_lightning.data.datasets.ph2 import read_ph2_diagnoses
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.layout import ScanBuilder
from lesion_lightning.data.records import DatasetScan, SampleRecord

__all__ = [
    "DATASETS",
    "SUBSETS",
    "ISIC2018_FOLDERS",
    "ISIC2017_FOLDERS",
    "FOLDER_DEFAULTS",
    "PH2_DIAGNOSES",
    "read_dataset",
    "scan_dataset",
    "detect_layout",
    "read_ph2_diagnoses",
]

DATASETS = list_datasets()  # the datasets registered when this module was imported


def read_dataset(
    name: str, root: str | Path, *, subsets: Sequence[str] | None = None, **options: Any
) -> list[SampleRecord]:
    """Records of dataset `name` under `root`, sorted by id.

    `subsets` restricts the official subsets read; `options` are the dataset's reader options (the
    `folder` reader's `image_dir`, `mask_dir`, `mask_pattern`, ...). Raises `DataError` naming the
    root when it does not exist or holds no image in the expected layout. Structural problems
    (missing masks, masks without image, duplicate ids) do not raise here: see `scan_dataset` and
    `check_dataset`.
    """
    return scan_dataset(name, root, subsets=subsets, **options).records


def scan_dataset(
    name: str, root: str | Path, *, subsets: Sequence[str] | None = None, **options: Any
) -> DatasetScan:
    """Walk the dataset folders: records plus structural problems and warnings (see module doc)."""
    spec = get_dataset_spec(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, f"dataset root not found (expected a {name} folder)")
    resolved = spec.options(options)
    if subsets is not None:
        spec.check_subsets(subsets)
    builder = ScanBuilder(name, root)
    spec.scan(builder, None if subsets is None else list(subsets), resolved)
    scan = builder.finish()
    if not scan.records:
        raise DataError(root, f"empty dataset: no image found in the {name} layout ({spec.layout})")
    return scan


def detect_layout(root: str | Path) -> str | None:
    """Which registered dataset the folder looks like (by its folder names), or None.

    Fixed layouts are tried first, in registration order; option-driven ones (`folder`) last.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    for name in (*list_datasets(fixed_layout=True), *list_datasets(fixed_layout=False)):
        if get_dataset_spec(name).detect(root):
            return name
    return None

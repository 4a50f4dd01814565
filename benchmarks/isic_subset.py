"""The fixed ISIC 2018 (128 px redistribution) subset the real-data benchmarks train on.

The first N sorted official training ids (train) and the 100 official validation images (val),
so every run and every machine sees the same images without a random draw.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(os.environ.get("ISIC2018_128_ROOT", REPO.parent / "shared" / "data" / "isic2018_128"))
IMAGE_DIRS = {"train": "ISIC2018_Task1-2_Training_Input", "val": "ISIC2018_Task1-2_Validation_Input"}
MASK_DIRS = {"train": "ISIC2018_Task1_Training_GroundTruth", "val": "ISIC2018_Task1_Validation_GroundTruth"}


def data_missing_reason(root: Path) -> str | None:
    """Why the benchmarks cannot run on `root`, or None when the official folders are all there."""
    for sub in (*IMAGE_DIRS.values(), *MASK_DIRS.values()):
        if not (root / sub).is_dir():
            return f"{root / sub} not found (isic2018_128 data absent; see ../shared/data/README.md)"
    return None


def subset_ids(root: Path, n_train: int) -> dict[str, list[str]]:
    """{'train': first n_train sorted training ids, 'val': every official validation id}."""
    ids = {k: sorted(p.stem for p in (root / d).glob("ISIC_*.jpg")) for k, d in IMAGE_DIRS.items()}
    if len(ids["train"]) < n_train:
        raise SystemExit(f"error: --train-images {n_train}: only {len(ids['train'])} training images in {root}")
    return {"train": ids["train"][:n_train], "val": ids["val"]}


def write_split_manifest(subsets: dict[str, list[str]], path: Path) -> Path:
    """The subset as a split manifest that `--data.split` reads."""
    path.write_text(json.dumps({"dataset": "isic2018", "scheme": "bench-subset", "seed": 0, "subsets": subsets}))
    return path


def pair_paths(root: Path, subset: str, image_id: str) -> tuple[Path, Path]:
    """(image, mask) files of one id in the official layout."""
    return (root / IMAGE_DIRS[subset] / f"{image_id}.jpg",
            root / MASK_DIRS[subset] / f"{image_id}_segmentation.png")

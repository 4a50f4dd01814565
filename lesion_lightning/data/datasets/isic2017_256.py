"""ISIC 2017 Part 1 as resized and redistributed in the public repository manideep2510/melanoma_segmentation:
the official 2000 / 150 / 600 pairs at 256x192, ``trainx/imgxN.jpg`` with its mask ``trainy/imgyN.jpg``
(JPEG, read with a threshold), likewise ``validationx/y`` and ``testx/y``; N restarts in each subset, so
ids are ``<subset>-N``. The original ISIC file names are gone: overlap with ISIC 2018 is found by content
(cross-eval's perceptual hash). The folder reader with fixed options; nothing else is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets import folder
from lesion_lightning.data.datasets.registry import SUBSETS, DatasetSpec, register_dataset
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.layout import ScanBuilder

FOLDERS = {"train": ("trainx", "trainy"), "val": ("validationx", "validationy"), "test": ("testx", "testy")}
OPTIONS = {**folder.OPTIONS, "image_pattern": "imgx{id}.jpg", "mask_pattern": "imgy{id}.jpg", "ids_per_subset": True}


def _scan(builder: ScanBuilder, subsets: list[str] | None, options: dict[str, Any]) -> None:
    """The subsets whose image folder is present (a copy may hold the test split only)."""
    present = {s: list(pair) for s, pair in FOLDERS.items() if (builder.root / pair[0]).is_dir()}
    if not present:
        raise DataError(builder.root, f"no ISIC 2017 redistribution folders ({', '.join(p[0] for p in FOLDERS.values())})")
    folder.scan_folder(builder, subsets, {**OPTIONS, "subset_dirs": present})


def _write(root: Path, counts: dict[str, int], seed: int, hw: tuple[int, int]) -> None:
    import cv2

    from lesion_lightning.data import synthetic_draw as syn

    for stream, subset in enumerate(s for s in SUBSETS if counts.get(s)):
        images, masks = FOLDERS[subset]
        (root / masks).mkdir(parents=True, exist_ok=True)
        for n in range(1, counts[subset] + 1):
            image, mask = syn.make_sample(syn.image_rng(seed, n, stream), hw)
            syn.write_jpeg(root / images / f"imgx{n}.jpg", image)
            cv2.imwrite(str(root / masks / f"imgy{n}.jpg"), mask * 255, [cv2.IMWRITE_JPEG_QUALITY, 90])


SPEC = register_dataset(DatasetSpec(
    name="isic2017_256",
    label="ISIC 2017 (256x192 redistribution)",
    layout="trainx/imgxN.jpg + trainy/imgyN.jpg, likewise validationx/y and testx/y",
    scan=_scan,
    write_synthetic=_write,
    detect=lambda root: (root / "trainx").is_dir() and (root / "trainy").is_dir(),
    official_subsets=FOLDERS,
    synthetic_images={"train": 40, "val": 5, "test": 11},
))

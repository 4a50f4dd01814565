"""ISIC 2017 Part 1: ``ISIC-2017_{Training,Validation,Test_v2}_Data/ISIC_xxxxxxx.jpg`` (the
``_superpixels.png`` files beside them are skipped) and
``ISIC-2017_{Training,Validation,Test_v2}_Part1_GroundTruth/ISIC_xxxxxxx_segmentation.png``
(2000 / 150 / 600 pairs), from the ISIC challenge archive."""

from __future__ import annotations

from lesion_lightning.data.datasets import _isic
from lesion_lightning.data.datasets.registry import DatasetSpec, register_dataset

FOLDERS = {
    "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
    "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
}


def _superpixels(path) -> bool:
    return path.stem.lower().endswith("_superpixels")


SPEC = register_dataset(DatasetSpec(
    name="isic2017",
    label="ISIC 2017",
    layout="ISIC-2017_Training_Data/ + ISIC-2017_Training_Part1_GroundTruth/, likewise Validation/Test_v2",
    scan=lambda builder, subsets, options: _isic.scan_isic(builder, FOLDERS, subsets, skip=_superpixels),
    write_synthetic=lambda root, counts, seed, hw: _isic.write_isic(root, FOLDERS, counts, seed, hw,
                                                                    superpixels=True),
    detect=_isic.detector(FOLDERS),
    official_subsets=FOLDERS,
    synthetic_images=_isic.SYNTHETIC_IMAGES,
    archives=_isic.archives("2017", FOLDERS),
    sample_folder="isic2017",
))

"""ISIC 2018 Task 1: ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_xxxxxxx.jpg`` and
``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_xxxxxxx_segmentation.png``
(2594 / 100 / 1000 pairs), from the ISIC challenge archive."""

from __future__ import annotations

from lesion_lightning.data.datasets import _isic
from lesion_lightning.data.datasets.registry import DatasetSpec, register_dataset

FOLDERS = {
    "train": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
    "val": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
    "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
}

SPEC = register_dataset(DatasetSpec(
    name="isic2018",
    label="ISIC 2018",
    layout="ISIC2018_Task1-2_Training_Input/ + ISIC2018_Task1_Training_GroundTruth/, likewise Validation/Test",
    scan=lambda builder, subsets, options: _isic.scan_isic(builder, FOLDERS, subsets),
    write_synthetic=lambda root, counts, seed, hw: _isic.write_isic(root, FOLDERS, counts, seed, hw),
    detect=_isic.detector(FOLDERS),
    official_subsets=FOLDERS,
    synthetic_images=_isic.SYNTHETIC_IMAGES,
    archives=_isic.archives("2018", FOLDERS),
))

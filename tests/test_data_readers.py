"""Dataset readers on the real samples in ../shared/data and on generated official-layout trees."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.data.errors import DataError
from lesion_lightning.data.io import load_mask
from lesion_lightning.data.readers import (
    DATASETS,
    detect_layout,
    read_dataset,
    read_ph2_diagnoses,
    scan_dataset,
)
from lesion_lightning.data.synthetic import write_dataset

SMALL = (40, 48)
ISIC_SUBSETS = {"train": 4, "val": 2, "test": 3}


def _write(tmp_path: Path, layout: str, n: int = 9) -> Path:
    kwargs = {"subsets": ISIC_SUBSETS} if layout in ("isic2018", "isic2017") else {"num_images": n}
    return write_dataset(tmp_path / layout, layout, image_size=SMALL, **kwargs)


# -- real samples --------------------------------------------------------------------------------


def test_real_ham10000_metadata_travels_with_records(ham10000_root):
    records = read_dataset("ham10000", ham10000_root)
    with open(ham10000_root / "HAM10000_metadata.csv", newline="") as fh:
        rows = {row["image_id"]: row for row in csv.DictReader(fh)}
    assert [r.id for r in records] == sorted(rows)
    for r in records:
        assert r.metadata["lesion_id"] == rows[r.id]["lesion_id"] == r.group
        assert r.metadata["dx"] == rows[r.id]["dx"]
        assert r.subset is None
        assert r.image_path.parent.name == "HAM10000_images_part_1"
        assert r.mask_path == ham10000_root / "HAM10000_segmentations_lesion_tschandl" / f"{r.id}_segmentation.png"
    assert {r.metadata["dx"] for r in records} >= {"nv", "mel", "bkl"}


def test_real_ph2_accepts_three_root_levels_and_reads_diagnosis(ph2_root):
    levels = [ph2_root, ph2_root / "PH2Dataset", ph2_root / "PH2Dataset" / "PH2 Dataset images"]
    results = [read_dataset("ph2", level) for level in levels]
    ids = [r.id for r in results[0]]
    assert len(ids) == 12 and all(i.startswith("IMD") for i in ids)
    for other in results[1:]:
        assert [r.id for r in other] == ids
    table = read_ph2_diagnoses(ph2_root / "PH2Dataset" / "PH2_dataset.txt")
    assert len(table) == 200  # the reduced table lists every PH2 case
    by_id = {r.id: r for r in results[0]}
    # From the file: IMD003 common nevus (0), IMD015 atypical (1), IMD058 melanoma (2).
    assert by_id["IMD003"].metadata["diagnosis"] == "common nevus"
    assert by_id["IMD015"].metadata == {"clinical_diagnosis": 1, "diagnosis": "atypical nevus"}
    assert by_id["IMD058"].metadata["clinical_diagnosis"] == 2
    for r in results[0]:
        assert r.metadata["clinical_diagnosis"] == table[r.id]["clinical_diagnosis"]


def test_real_ph2_one_bit_masks_read_as_binary(ph2_root):
    for r in read_dataset("ph2", ph2_root)[:4]:
        with Image.open(r.mask_path) as im:
            assert im.mode == "1"
        mask = load_mask(r.mask_path)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        assert 0.02 < mask.mean() < 0.98


def test_real_isic2017_test_subset(isic2017_root):
    scan = scan_dataset("isic2017", isic2017_root)
    assert [r.id for r in scan.records] == ["ISIC_0013085", "ISIC_0013948"]
    assert {r.subset for r in scan.records} == {"test"}
    assert all(r.mask_path.name == f"{r.id}_segmentation.png" and r.mask_path.is_file() for r in scan.records)
    assert not scan.problems and not scan.unlabelled_subsets


def test_detect_layout_on_real_samples(ham10000_root, ph2_root, isic2017_root):
    assert detect_layout(ham10000_root) == "ham10000"
    assert detect_layout(ph2_root) == "ph2"
    assert detect_layout(isic2017_root) == "isic2017"


# -- generated official layouts ------------------------------------------------------------------


@pytest.mark.parametrize("layout", DATASETS)
def test_generated_layouts_read_back(tmp_path, layout):
    root = _write(tmp_path, layout)
    scan = scan_dataset(layout, root)
    expected = sum(ISIC_SUBSETS.values()) if layout.startswith("isic") else 9
    assert len(scan.records) == expected
    assert [r.id for r in scan.records] == sorted(r.id for r in scan.records)
    assert not scan.problems, scan.problems
    for r in scan.records:
        assert r.image_path.is_file() and r.mask_path is not None and r.mask_path.is_file()
        name_id = r.id.removeprefix(f"{r.subset}-")  # isic2017_256: ids are <subset>-N
        assert name_id in r.image_path.name and name_id in r.mask_path.name
    assert detect_layout(root) == layout


def test_isic_subsets_noise_files_and_superpixels(tmp_path):
    root = _write(tmp_path, "isic2017")
    assert list(root.glob("*/*_superpixels.png")) and list(root.glob("*/LICENSE.txt"))
    (root / "ISIC-2017_Training_Data" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "ISIC-2017_Training_Data" / "._ISIC_0000000.jpg").write_bytes(b"\0\5\26\7")  # macOS resource fork
    records = read_dataset("isic2017", root)
    counts = {s: sum(r.subset == s for r in records) for s in ISIC_SUBSETS}
    assert counts == ISIC_SUBSETS
    assert not any("superpixels" in r.id for r in records)
    only_val = read_dataset("isic2017", root, subsets=["val"])
    assert len(only_val) == 2 and {r.subset for r in only_val} == {"val"}


def test_subset_without_ground_truth_folder_is_prediction_only(tmp_path):
    root = _write(tmp_path, "isic2018")
    shutil.rmtree(root / "ISIC2018_Task1_Test_GroundTruth")
    scan = scan_dataset("isic2018", root)
    test = [r for r in scan.records if r.subset == "test"]
    assert len(test) == 3 and all(r.mask_path is None for r in test)
    assert scan.unlabelled_subsets == ["test"]
    assert not scan.problems  # a warning, not a problem
    assert any("Test_GroundTruth" in w.file for w in scan.warnings)


def test_ham10000_groups_by_lesion_and_reads_both_parts(tmp_path):
    root = _write(tmp_path, "ham10000", n=16)
    records = read_dataset("ham10000", root)
    assert {r.image_path.parent.name for r in records} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    groups = {r.group for r in records}
    assert all(g.startswith("HAM_") for g in groups)
    assert len(groups) < len(records)  # several images per lesion in the generated metadata


def test_ham10000_without_metadata_groups_by_image_and_warns(tmp_path):
    root = _write(tmp_path, "ham10000")
    (root / "HAM10000_metadata.csv").unlink()
    scan = scan_dataset("ham10000", root)
    assert all(r.group == r.id for r in scan.records)
    assert any("metadata" in w.problem for w in scan.warnings)


def test_ph2_original_pipe_table_is_parsed(tmp_path):
    table = tmp_path / "PH2_dataset.txt"
    table.write_text(
        "|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry ||\n"
        "|| IMD003 ||                        ||         0          ||     0     ||\n"
        "|| IMD063 ||       Melanoma         ||         2          ||     2     ||\n"
        "\n|| Legend ||\n"
    )
    out = read_ph2_diagnoses(table)
    assert out == {
        "IMD003": {"clinical_diagnosis": 0, "diagnosis": "common nevus"},
        "IMD063": {"clinical_diagnosis": 2, "diagnosis": "melanoma", "histological_diagnosis": "Melanoma"},
    }
    (tmp_path / "bad.txt").write_text("nothing here\n")
    with pytest.raises(DataError, match="Clinical Diagnosis"):
        read_ph2_diagnoses(tmp_path / "bad.txt")


def test_folder_reader_custom_pattern(tmp_path):
    root = tmp_path / "custom"
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(root / "img" / f"case{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "gt" / f"mask_case{i}.png")
    records = read_dataset("folder", root, image_dir="img", mask_dir="gt", mask_pattern="mask_{id}.png")
    assert [(r.id, r.mask_path.name) for r in records] == [(f"case{i}", f"mask_case{i}.png") for i in range(3)]
    with pytest.raises(ValueError, match="mask_pattern"):
        read_dataset("folder", root, image_dir="img", mask_dir="gt", mask_pattern="mask.png")


def test_duplicate_ids_across_subsets_are_reported_once_kept_first(tmp_path):
    root = _write(tmp_path, "isic2018")
    src = root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000.jpg"
    shutil.copy(src, root / "ISIC2018_Task1-2_Validation_Input" / src.name)
    scan = scan_dataset("isic2018", root)
    dup = [p for p in scan.problems if "duplicate id" in p.problem]
    assert len(dup) == 1 and "Validation_Input" in dup[0].file and dup[0].record_id == "ISIC_0000000"
    kept = next(r for r in scan.records if r.id == "ISIC_0000000")
    assert kept.subset == "train"


def test_bad_roots_and_options(tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        read_dataset("isic2019", tmp_path)
    with pytest.raises(DataError, match="not found") as exc:
        read_dataset("ph2", tmp_path / "absent")
    assert "absent" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty dataset") as exc:
        read_dataset("isic2018", tmp_path / "empty")
    assert exc.value.file == str(tmp_path / "empty")
    with pytest.raises(ValueError, match="mask_dir"):
        read_dataset("ph2", tmp_path, mask_dir="x")
    with pytest.raises(ValueError, match="no official subsets"):
        read_dataset("ham10000", tmp_path, subsets=["train"])

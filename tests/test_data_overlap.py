"""Overlap between datasets: shared ids and byte-identical images are both found."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from lesion_lightning.data.checks import check_dataset
from lesion_lightning.data.overlap import NEAR_DUPLICATE_BITS, find_overlap
from lesion_lightning.data.readers import read_dataset
from lesion_lightning.data.synthetic import write_dataset


def _trees(tmp_path):
    a = write_dataset(tmp_path / "a", "isic2018", image_size=(32, 40), subsets={"train": 5})
    b = write_dataset(tmp_path / "b", "ham10000", num_images=4, image_size=(32, 40), seed=9)
    a_in = a / "ISIC2018_Task1-2_Training_Input"
    a_gt = a / "ISIC2018_Task1_Training_GroundTruth"
    b_in = b / "HAM10000_images_part_1"
    b_gt = b / "HAM10000_segmentations_lesion_tschandl"
    # ISIC_0000000: same id, same bytes (ISIC 2017 vs 2018 style)
    shutil.copy(a_in / "ISIC_0000000.jpg", b_in)
    shutil.copy(a_gt / "ISIC_0000000_segmentation.png", b_gt)
    # ISIC_0000001: same id, resized re-encode (HAM10000 vs ISIC 2018 style)
    Image.open(a_in / "ISIC_0000001.jpg").resize((20, 16)).save(b_in / "ISIC_0000001.jpg", quality=80)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(b_gt / "ISIC_0000001_segmentation.png")
    # ISIC_0000002 copied under another id: content only
    shutil.copy(a_in / "ISIC_0000002.jpg", b_in / "ISIC_0077777.jpg")
    shutil.copy(a_gt / "ISIC_0000002_segmentation.png", b_gt / "ISIC_0077777_segmentation.png")
    return a, b


def test_find_overlap_by_id_and_content(tmp_path):
    a, b = _trees(tmp_path)
    ra, rb = read_dataset("isic2018", a), read_dataset("ham10000", b)
    report = find_overlap(ra, rb)
    assert report.shared_ids == ["ISIC_0000000", "ISIC_0000001"]
    assert report.same_content == [("ISIC_0000000", "ISIC_0000000"), ("ISIC_0000002", "ISIC_0077777")]
    assert report.ids_b == {"ISIC_0000000", "ISIC_0000001", "ISIC_0077777"}
    assert report.ids_a == {"ISIC_0000000", "ISIC_0000001", "ISIC_0000002"}
    d = report.to_dict()
    assert d["num_shared"] == 3 and d["same_content_other_id"] == [["ISIC_0000002", "ISIC_0077777"]]
    assert find_overlap(ra, rb, by_content=False).same_content == []


def test_check_data_against_detects_layout(tmp_path):
    a, b = _trees(tmp_path)
    report = check_dataset("isic2018", a, against=b)  # layout of b detected: ham10000
    assert report.ok  # overlap is reported, not a data problem
    assert report.overlap["dataset"] == "ham10000" and report.overlap["num_shared"] == 3
    assert any("shared with ham10000" in w.problem for w in report.warnings)


def test_real_samples_do_not_overlap(ham10000_root, isic2017_root):
    report = find_overlap(read_dataset("ham10000", ham10000_root), read_dataset("isic2017", isic2017_root))
    assert report.num_shared == 0


def test_resized_and_reencoded_copies_are_near_duplicates(tmp_path):
    a = write_dataset(tmp_path / "a", "isic2018", num_images=12, image_size=(96, 128))
    b = tmp_path / "b"
    (b / "images").mkdir(parents=True)
    (b / "masks").mkdir()
    train = a / "ISIC2018_Task1-2_Training_Input"
    # a resized, re-encoded copy and a squashed, PNG-encoded copy, both under new ids
    Image.open(train / "ISIC_0000003.jpg").resize((200, 150)).save(b / "images" / "copy_a.jpg", quality=70)
    Image.open(train / "ISIC_0000007.jpg").resize((64, 64)).save(b / "images" / "copy_b.png")
    shutil.copy(a / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000005_segmentation.png", b / "masks")
    write_dataset(tmp_path / "other", "isic2018", num_images=4, seed=9, image_size=(96, 128))
    for i, path in enumerate(sorted((tmp_path / "other" / "ISIC2018_Task1-2_Training_Input").glob("*.jpg"))):
        shutil.copy(path, b / "images" / f"fresh_{i}.jpg")  # other images: not duplicates
    ra, rb = read_dataset("isic2018", a), read_dataset("folder", b)
    report = find_overlap(ra, rb)
    assert report.shared_ids == [] and report.same_content == []
    assert [(x, y) for x, y, _ in report.near_duplicates] == [("ISIC_0000003", "copy_a"), ("ISIC_0000007", "copy_b")]
    assert all(d <= NEAR_DUPLICATE_BITS for _, _, d in report.near_duplicates)
    assert report.ids_b == {"copy_a", "copy_b"} and report.num_shared == 2
    assert report.to_dict()["near_duplicates"][0][:2] == ["ISIC_0000003", "copy_a"]
    assert find_overlap(ra, rb, tolerance=-1).num_shared == 0

"""check_dataset: every bad-input case of issue 2 is caught and names its file; clean data passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.data import checks
from lesion_lightning.data.checks import check_dataset, check_records
from lesion_lightning.data.readers import read_dataset
from lesion_lightning.data.synthetic import write_dataset

TRAIN_IN = "ISIC2018_Task1-2_Training_Input"
TRAIN_GT = "ISIC2018_Task1_Training_GroundTruth"


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_dataset(tmp_path / "isic2018", "isic2018", image_size=(40, 48), subsets={"train": 6, "val": 2})


def _img(tree: Path, i: int) -> Path:
    return tree / TRAIN_IN / f"ISIC_{i:07d}.jpg"


def _mask(tree: Path, i: int) -> Path:
    return tree / TRAIN_GT / f"ISIC_{i:07d}_segmentation.png"


def test_clean_generated_tree(tree):
    report = check_dataset("isic2018", tree)
    assert report.ok, report.problems
    assert report.num_pairs == report.num_images == 8
    assert report.subsets == {"train": 6, "val": 2}
    assert report.image_height == (40, 40) and report.image_width == (48, 48)
    lo, hi, mean = report.mask_coverage
    assert 0 < lo <= mean <= hi < 1
    d = report.to_dict()
    assert d["dataset"] == "isic2018" and d["num_pairs"] == 8 and d["problems"] == []


@pytest.mark.parametrize("name", ["ham10000", "ph2", "isic2017"])
def test_real_samples_are_clean(name, request):
    root = request.getfixturevalue(f"{name}_root")
    report = check_dataset(name, root)
    assert report.ok, report.problems
    assert report.num_pairs == {"ham10000": 30, "ph2": 12, "isic2017": 2}[name]
    assert report.mask_coverage[0] > 0


def _truncate(tree: Path) -> tuple[Path, str]:
    path = _img(tree, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "truncated"


def _missing_mask(tree: Path) -> tuple[Path, str]:
    _mask(tree, 2).unlink()
    return _img(tree, 2), "missing mask"


def _orphan_mask(tree: Path) -> tuple[Path, str]:
    extra = tree / TRAIN_GT / "ISIC_0099999_segmentation.png"
    shutil.copy(_mask(tree, 0), extra)
    return extra, "mask without image"


def _mis_sized_mask(tree: Path) -> tuple[Path, str]:
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(_mask(tree, 3))
    return _mask(tree, 3), "mask size 24x20 != image size 48x40"


def _three_valued_mask(tree: Path) -> tuple[Path, str]:
    m = np.zeros((40, 48), np.uint8)
    m[10:20, 10:20] = 128
    m[20:30, 20:30] = 255
    Image.fromarray(m).save(_mask(tree, 4))
    return _mask(tree, 4), "mask not binary: 3 distinct values"


def _duplicate_id(tree: Path) -> tuple[Path, str]:
    dup = tree / "ISIC2018_Task1-2_Validation_Input" / _img(tree, 0).name
    shutil.copy(_img(tree, 0), dup)
    return dup, "duplicate id ISIC_0000000"


@pytest.mark.parametrize(
    "damage", [_truncate, _missing_mask, _orphan_mask, _mis_sized_mask, _three_valued_mask, _duplicate_id],
)
def test_each_problem_is_reported_naming_the_file(tree, damage):
    path, text = damage(tree)
    report = check_dataset("isic2018", tree)
    assert not report.ok
    matching = [p for p in report.problems if p.file == str(path)]
    assert matching and text in matching[0].problem, report.problems
    assert len(report.problems) == 1, report.problems


def test_truncated_jpeg_with_end_marker_kept_is_still_caught(tree):
    # Cut the middle out but keep the end-of-image marker: the cheap tail test passes, decode must fail.
    path = _img(tree, 5)
    data = path.read_bytes()
    path.write_bytes(data[:200] + data[-2:])
    report = check_dataset("isic2018", tree, decode_images=True)
    assert [p.file for p in report.problems] == [str(path)]


@pytest.mark.parametrize(
    "mode, array, expected",
    [
        ("L", np.full((40, 48), 120, np.uint8), "grayscale"),
        ("RGBA", np.full((40, 48, 4), 200, np.uint8), "RGBA"),
        ("I;16", np.full((40, 48), 40000, np.uint16), "16-bit"),
    ],
)
def test_converted_images_warn_not_fail(tree, mode, array, expected):
    path = tree / TRAIN_IN / "ISIC_0000001.png"
    im = Image.fromarray(array)
    assert im.mode == mode
    im.save(path)
    _img(tree, 1).unlink()
    report = check_dataset("isic2018", tree)
    assert report.ok, report.problems
    assert any(w.file == str(path) and expected in w.problem for w in report.warnings), report.warnings


def test_zero_one_and_palette_masks_are_binary(tree):
    m = (np.asarray(Image.open(_mask(tree, 0))) > 127).astype(np.uint8)
    Image.fromarray(m).save(_mask(tree, 0))  # 0/1 values
    p = Image.fromarray(m, mode="L").convert("P")
    p.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    p.save(_mask(tree, 1))
    report = check_dataset("isic2018", tree)
    assert report.ok, report.problems


def test_empty_folder_is_a_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    report = check_dataset("ham10000", tmp_path / "empty")
    assert not report.ok and report.num_pairs == 0
    assert report.problems[0].file == str(tmp_path / "empty") and "empty dataset" in report.problems[0].problem


def test_memo_skips_unchanged_files_and_rechecks_changed(tree, tmp_path, monkeypatch):
    records = read_dataset("isic2018", tree)
    memo = tmp_path / "memo.json"
    first = check_records(records, memo_path=memo, workers=1)
    assert memo.exists() and not any(r.problems for r in first)

    def boom(*args, **kwargs):
        raise AssertionError("decoded a mask that the memo knew")

    monkeypatch.setattr(checks, "load_mask", boom)
    again = check_records(records, memo_path=memo, workers=1)
    assert [(r.id, r.hw, r.coverage) for r in again] == [(r.id, r.hw, r.coverage) for r in first]
    monkeypatch.undo()

    m = np.zeros((40, 48), np.uint8)
    m[0, 0], m[0, 1] = 100, 200
    Image.fromarray(m).save(_mask(tree, 2))  # the file changed: decoded again, problem found
    result = {r.id: r for r in check_records(records, memo_path=memo, workers=1)}
    assert "not binary" in result["ISIC_0000002"].problems[0].problem

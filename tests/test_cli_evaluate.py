"""`lesion-lightning evaluate` on the real HAM10000 sample masks."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from lesion_lightning.cli import main

GT_FOLDER = "HAM10000_segmentations_lesion_tschandl"


def _gt_dir(root: Path) -> Path:
    return root / GT_FOLDER


def _read(path: Path) -> np.ndarray:
    return (np.asarray(Image.open(path).convert("L")) > 127).astype(np.uint8)


def _evaluate_json(capsys, *args: str) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _numpy_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    """Independent pooled and per-image scores (ISIC conventions: 0/0 -> 1)."""
    counts = np.array([[(t & p).sum(), (~t & p).sum(), (~t & ~p).sum(), (t & ~p).sum()]
                       for t, p in ((t.astype(bool), p.astype(bool)) for t, p in pairs)], dtype=float)

    def scores(tp, fp, tn, fn):
        def r(a, b):
            return np.where(b > 0, a / np.maximum(b, 1), 1.0)

        return {"dice": r(2 * tp, 2 * tp + fp + fn), "iou": r(tp, tp + fp + fn), "sensitivity": r(tp, tp + fn),
                "specificity": r(tn, tn + fp), "accuracy": r(tp + tn, tp + tn + fp + fn)}

    pooled = {k: float(v) for k, v in scores(*counts.sum(0)).items()}
    per = scores(*counts.T)
    per_mean = {k: float(v.mean()) for k, v in per.items()}
    per_mean["thresholded_jaccard"] = float(np.where(per["iou"] >= 0.65, per["iou"], 0.0).mean())
    return pooled, {"per": per, "mean": per_mean}


def test_ground_truth_against_itself_scores_one(ham10000_root, capsys):
    gt = _gt_dir(ham10000_root)
    out = _evaluate_json(capsys, "--pred", str(gt), "--gt", str(gt))
    n = len(list(gt.glob("*_segmentation.png")))
    assert n >= 10
    assert out == {
        "num_images": n,
        "pooled": {k: 1.0 for k in ("dice", "iou", "sensitivity", "specificity", "accuracy")},
        "per_image": {k: 1.0 for k in ("dice", "iou", "sensitivity", "specificity", "accuracy", "thresholded_jaccard")},
    }


def test_eroded_predictions_match_independent_numpy_and_official_scorer(ham10000_root, tmp_path, capsys):
    gt = _gt_dir(ham10000_root)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pairs = []
    for i, path in enumerate(sorted(gt.glob("*_segmentation.png"))):
        truth = _read(path)
        # Varying erosion so some images fall below the 0.65 Jaccard cut-off; one prediction empty.
        pred = ndimage.binary_erosion(truth, iterations=2 + 9 * (i % 6)).astype(np.uint8)
        if i == 3:
            pred[:] = 0
        # Plain `<id>.png` names on the prediction side, ISIC `_segmentation` names on the truth side.
        Image.fromarray(pred * 255).save(pred_dir / path.name.replace("_segmentation", ""))
        pairs.append((truth, pred))
    csv_path = tmp_path / "rows.csv"
    out = _evaluate_json(capsys, "--pred", str(pred_dir), "--gt", str(gt), "--csv", str(csv_path))
    pooled, per = _numpy_scores(pairs)
    assert out["num_images"] == len(pairs)
    assert out["pooled"] == pytest.approx(pooled, abs=1e-6)
    assert out["per_image"] == pytest.approx(per["mean"], abs=1e-6)
    assert 0 < out["per_image"]["thresholded_jaccard"] < out["per_image"]["iou"]  # the cut-off bit
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["dice"]) for r in rows] == pytest.approx(list(per["per"]["dice"]), abs=1e-9)
    assert rows[0]["id"] == sorted(gt.glob("*_segmentation.png"))[0].name.replace("_segmentation.png", "")

    scoring = pytest.importorskip("isic_challenge_scoring.segmentation")
    official = scoring.SegmentationScore.from_dir(gt, pred_dir).macro_average
    for theirs, ours in (("dice", "dice"), ("jaccard", "iou"), ("threshold_jaccard", "thresholded_jaccard"),
                         ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("accuracy", "accuracy")):
        assert out["per_image"][ours] == pytest.approx(float(official[theirs]), abs=1e-6), theirs


def test_soft_prediction_maps_use_the_grey_level_threshold(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    truth = np.zeros((4, 4), np.uint8)
    truth[:2] = 255
    Image.fromarray(truth).save(gt_dir / "ISIC_0000001_segmentation.png")
    soft = np.array([[200, 129, 128, 0]] * 2 + [[0, 50, 128, 129]] * 2, np.uint8)  # > 128 is lesion
    Image.fromarray(soft).save(pred_dir / "ISIC_0000001.png")
    out = _evaluate_json(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir))
    # lesion rows: 2 of 4 pixels predicted per row (tp 4, fn 4); background rows: 1 of 4 (fp 2, tn 6)
    assert out["pooled"]["sensitivity"] == pytest.approx(4 / 8)
    assert out["pooled"]["specificity"] == pytest.approx(6 / 8)
    out = _evaluate_json(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--threshold", "40")
    assert out["pooled"]["sensitivity"] == pytest.approx(6 / 8)  # 128 and 129 count at threshold 40


def test_missing_predictions_size_mismatch_and_duplicates_are_clear_errors(ham10000_root, tmp_path, capsys):
    gt_src = sorted(_gt_dir(ham10000_root).glob("*_segmentation.png"))[:3]
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for p in gt_src:
        shutil.copy(p, gt_dir / p.name)
    for p in gt_src[:2]:
        shutil.copy(p, pred_dir / p.name)
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 1
    err = capsys.readouterr().err
    assert gt_src[2].name in err and "--missing zero" in err

    out = _evaluate_json(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--missing", "zero")
    assert out["num_images"] == 3
    assert out["per_image"]["dice"] == pytest.approx(2 / 3)  # two perfect, one empty prediction scores 0
    assert out["per_image"]["sensitivity"] == pytest.approx(2 / 3)

    small = pred_dir / gt_src[2].name.replace("_segmentation", "")
    Image.open(gt_src[2]).resize((20, 10)).save(small)
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 1
    err = capsys.readouterr().err
    assert small.name in err and "20x10" in err

    small.unlink()
    shutil.copy(gt_src[2], pred_dir / small.name)
    shutil.copy(gt_src[2], pred_dir / gt_src[2].name)  # same id twice on the prediction side
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 1
    assert "two prediction files" in capsys.readouterr().err

    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--gt", str(gt_dir)]) == 1
    assert "prediction folder not found" in capsys.readouterr().err


def test_gt_may_be_a_flat_dataset_folder_as_for_predict(ham10000_root, ph2_root, tmp_path, capsys):
    """One rule for `evaluate --gt` and `predict --gt`: a folder with images beside their masks (flat ISIC) or
    PH2's tree reads its masks only."""
    masks = sorted(_gt_dir(ham10000_root).glob("*_segmentation.png"))[:3]
    flat, pred_dir = tmp_path / "isic", tmp_path / "pred"
    flat.mkdir()
    pred_dir.mkdir()
    for m in masks:
        image_id = m.name.replace("_segmentation.png", "")
        shutil.copy(ham10000_root / "HAM10000_images_part_1" / f"{image_id}.jpg", flat / f"{image_id}.jpg")
        shutil.copy(m, flat / m.name)
        shutil.copy(m, pred_dir / f"{image_id}.png")  # perfect predictions
    out = _evaluate_json(capsys, "--pred", str(pred_dir), "--gt", str(flat))
    assert out["num_images"] == 3 and out["pooled"]["dice"] == 1.0
    ph2_masks = sorted(ph2_root.rglob("*_lesion.bmp"))
    ph2_pred = tmp_path / "ph2_pred"
    ph2_pred.mkdir()
    for m in ph2_masks:
        Image.open(m).convert("L").point(lambda v: 255 if v else 0).save(ph2_pred / f"{m.stem}.png")
    out = _evaluate_json(capsys, "--pred", str(ph2_pred), "--gt", str(ph2_root))
    assert out["num_images"] == len(ph2_masks) > 0 and out["pooled"]["dice"] == 1.0


def test_missing_zero_with_no_matching_prediction_warns(ham10000_root, tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for m in sorted(_gt_dir(ham10000_root).glob("*_segmentation.png"))[:2]:
        shutil.copy(m, gt_dir / m.name)
        shutil.copy(m, pred_dir / f"other_{m.name}")  # ids that match nothing
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--missing", "zero", "--json"]) == 0
    err = capsys.readouterr().err
    assert "no prediction in --pred" in err and "empty prediction" in err

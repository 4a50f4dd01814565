"""SegmentationMetrics against the official ISIC scorer, an independent numpy count, and DDP sync."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest
import torch

from lesion_lightning.metrics import PER_IMAGE_KEYS, POOLED_KEYS, SegmentationMetrics

isic_metrics = pytest.importorskip("isic_challenge_scoring.metrics")
from isic_challenge_scoring.confusion import create_binary_confusion_matrix  # noqa: E402
from isic_challenge_scoring.segmentation import SegmentationScore  # noqa: E402

H, W = 16, 20


def _random_masks(seed: int, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(n,H,W) truth and prediction {0,1} with the corner cases the ISIC scorer special-cases."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, H, W), np.uint8)
    pred = np.zeros((n, H, W), np.uint8)
    for i in range(n):
        # Blob-like truth (so Jaccard spans 0..1) and a noisy, shifted prediction.
        cy, cx, r = rng.integers(3, H - 3), rng.integers(3, W - 3), rng.integers(2, 7)
        yy, xx = np.mgrid[:H, :W]
        truth[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        shift = rng.integers(-2, 3, size=2)
        pred[i] = np.roll(truth[i], tuple(shift), axis=(0, 1)) ^ (rng.random((H, W)) < rng.uniform(0, 0.15))
    truth[0] = 0  # empty truth, non-empty prediction
    pred[1] = 0  # empty prediction, non-empty truth
    truth[2] = 0
    pred[2] = 0  # both empty
    truth[3] = 1  # all-lesion truth (specificity denominator 0)
    pred[4] = truth[4]  # perfect
    return truth, pred


def _numpy_counts(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    t, p = truth.astype(bool), pred.astype(bool)
    return np.stack(
        [(t & p).sum((1, 2)), (~t & p).sum((1, 2)), (~t & ~p).sum((1, 2)), (t & ~p).sum((1, 2))], axis=1
    ).astype(np.int64)


def _ratios(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    def r(a, b):
        a, b = np.asarray(a, float), np.asarray(b, float)
        return np.where(b > 0, a / np.maximum(b, 1), 1.0)

    return {
        "dice": r(2 * tp, 2 * tp + fp + fn),
        "iou": r(tp, tp + fp + fn),
        "sensitivity": r(tp, tp + fn),
        "specificity": r(tn, tn + fp),
        "accuracy": r(tp + tn, tp + tn + fp + fn),
        "precision": r(tp, tp + fp),
    }


def _metric_on(truth: np.ndarray, pred: np.ndarray, **kwargs) -> SegmentationMetrics:
    m = SegmentationMetrics(**kwargs)
    m.update(torch.from_numpy(pred).bool(), torch.from_numpy(truth), ids=[f"img{i}" for i in range(len(truth))])
    return m


@pytest.mark.parametrize("seed", [0, 1])
def test_per_image_matches_official_isic_scorer(seed):
    truth, pred = _random_masks(seed)
    rows = _metric_on(truth, pred).per_image()
    for i, row in enumerate(rows):
        cm = create_binary_confusion_matrix(truth[i] > 0, pred[i] > 0, name=f"img{i}")
        official = {
            "dice": isic_metrics.binary_dice(cm),
            "iou": isic_metrics.binary_jaccard(cm),
            "sensitivity": isic_metrics.binary_sensitivity(cm),
            "specificity": isic_metrics.binary_specificity(cm),
            "accuracy": isic_metrics.binary_accuracy(cm),
            "precision": isic_metrics.binary_ppv(cm),
            "thresholded_jaccard": isic_metrics.binary_threshold_jaccard(cm, threshold=0.65),
        }
        assert row["id"] == f"img{i}"
        for key, value in official.items():
            assert row[key] == pytest.approx(float(value), abs=1e-12), (i, key)
    # The corner cases really are in the data and take the scorer's 1.0 convention.
    assert rows[2]["dice"] == rows[2]["iou"] == rows[2]["sensitivity"] == rows[2]["precision"] == 1.0
    assert rows[0]["sensitivity"] == 1.0 and rows[0]["dice"] == 0.0
    assert rows[1]["precision"] == 1.0 and rows[1]["sensitivity"] == 0.0
    assert rows[3]["specificity"] == 1.0


def test_per_image_means_match_official_macro_average():
    truth, pred = _random_masks(3)
    # The official aggregate reads 8-bit images and counts > 128 as lesion.
    pairs = [
        types.SimpleNamespace(truth_image=truth[i] * 255, prediction_image=pred[i] * 255, image_id=f"ISIC_{i:07d}")
        for i in range(len(truth))
    ]
    official = SegmentationScore(pairs).macro_average
    ours = {k: float(v) for k, v in _metric_on(truth, pred).compute().items()}
    mapping = {
        "accuracy": "accuracy_per_image",
        "sensitivity": "sensitivity_per_image",
        "specificity": "specificity_per_image",
        "jaccard": "iou_per_image",
        "threshold_jaccard": "thresholded_jaccard",
        "dice": "dice_per_image",
    }
    for theirs, mine in mapping.items():
        assert ours[mine] == pytest.approx(float(official[theirs]), abs=1e-6), theirs


def test_pooled_and_per_image_match_numpy_count():
    truth, pred = _random_masks(5)
    values = {k: float(v) for k, v in _metric_on(truth, pred).compute().items()}
    assert set(values) == set(POOLED_KEYS) | set(PER_IMAGE_KEYS)
    counts = _numpy_counts(truth, pred)
    pooled = _ratios(*counts.sum(0))
    for key, value in pooled.items():
        assert values[key] == pytest.approx(float(value), abs=1e-6), key
    per = _ratios(*counts.T)
    for key, value in per.items():
        assert values[f"{key}_per_image"] == pytest.approx(float(value.mean()), abs=1e-6), key
    jac = per["iou"]
    assert values["thresholded_jaccard"] == pytest.approx(float(np.where(jac >= 0.65, jac, 0).mean()), abs=1e-6)
    # Two-class mean IoU over the pooled confusion matrix (lesion and background IoU).
    tp, fp, tn, fn = counts.sum(0)
    assert values["mean_iou"] == pytest.approx((tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2, abs=1e-6)
    # Pooled and per-image means really differ here (the two aggregations papers mix up).
    assert abs(values["dice"] - values["dice_per_image"]) > 1e-3


def test_mean_iou_leaves_out_an_absent_class_like_keras():
    m = SegmentationMetrics()
    m.update(torch.zeros(2, H, W), torch.zeros(2, H, W))  # no lesion anywhere: only background counts
    values = m.compute()
    assert float(values["mean_iou"]) == 1.0
    m = SegmentationMetrics()
    pred = torch.zeros(1, H, W)
    pred[0, :4] = 1  # 4 rows of false positives, no true lesion
    m.update(pred, torch.zeros(1, H, W))
    bg_iou = (H - 4) * W / (H * W)
    assert float(m.compute()["mean_iou"]) == pytest.approx(bg_iou / 2)  # lesion IoU 0 (FP makes it valid)


def test_split_updates_and_merged_metrics_equal_one_pass():
    truth, pred = _random_masks(7, n=10)
    probs = np.clip(pred * 0.8 + np.random.default_rng(0).uniform(0, 0.2, pred.shape), 0, 1).astype(np.float32)
    ids = [f"id{i}" for i in range(10)]
    one = SegmentationMetrics()
    one.update(torch.from_numpy(probs)[:, None], torch.from_numpy(truth)[:, None].float(), ids=ids)
    expected = one.compute()

    several = SegmentationMetrics()
    for lo, hi in ((0, 3), (3, 4), (4, 10)):
        several.update(torch.from_numpy(probs[lo:hi]), torch.from_numpy(truth[lo:hi]), ids=ids[lo:hi])
    first, second = SegmentationMetrics(), SegmentationMetrics()
    first.update(torch.from_numpy(probs[:6]), torch.from_numpy(truth[:6]), ids=ids[:6])
    second.update(torch.from_numpy(probs[6:]), torch.from_numpy(truth[6:]), ids=ids[6:])
    second.merge_state(first)  # incoming state goes first, as the all-gather of rank 0 then rank 1
    for other in (several, second):
        got = other.compute()
        for key in expected:
            assert float(got[key]) == pytest.approx(float(expected[key]), abs=1e-7), key
        assert other.per_image() == one.per_image()


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    m = _shard(rank)
    result = {"values": {k: float(v) for k, v in m.compute().items()}, "rows": m.per_image()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    torch.distributed.destroy_process_group()


def _ddp_expected() -> tuple[dict[str, float], list[dict]]:
    truth, pred = _random_masks(11, n=9)
    single = _metric_on(truth, pred)
    rows = single.per_image()
    for i, row in enumerate(rows):
        row["id"] = f"ISIC_{i:07d}"
    return {k: float(v) for k, v in single.compute().items()}, rows


def _shard(rank: int) -> SegmentationMetrics:
    truth, pred = _random_masks(11, n=9)
    m = SegmentationMetrics()
    # Uneven shards (rank 0: 5 images in 2 updates, rank 1: 4 images) to exercise padded gathers.
    lo, hi = (0, 5) if rank == 0 else (5, 9)
    for a, b in ((lo, lo + 2), (lo + 2, hi)):
        m.update(torch.from_numpy(pred[a:b]), torch.from_numpy(truth[a:b]), ids=[f"ISIC_{i:07d}" for i in range(a, b)])
    return m


def test_simulated_ddp_sync_equals_single_process():
    """torchmetrics' own sync path, with an in-process all-gather standing in for two ranks."""
    recorded: list[torch.Tensor] = []

    def record(tensor, group=None):  # rank 1's tensors, in the order a sync gathers them
        recorded.append(tensor.clone())
        return [tensor]

    _shard(1).sync(dist_sync_fn=record, distributed_available=lambda: True)
    calls = [0]

    def all_gather(tensor, group=None):  # rank 0's view: its own tensor, then rank 1's
        other = recorded[calls[0] % len(recorded)]
        calls[0] += 1
        return [tensor, other]

    rank0 = _shard(0)
    rank0.dist_sync_fn = all_gather
    rank0.distributed_available_fn = lambda: True
    expected, expected_rows = _ddp_expected()
    got = {k: float(v) for k, v in rank0.compute().items()}
    assert got == pytest.approx(expected, abs=1e-7)
    assert rank0.per_image() == expected_rows
    assert calls[0] == 2 * len(recorded)  # compute() and per_image() both gathered every state


@pytest.mark.slow
def test_two_process_ddp_sync_equals_single_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected, expected_rows = _ddp_expected()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["values"] == pytest.approx(expected, abs=1e-7)
        assert got["rows"] == expected_rows  # rank 0's images then rank 1's: here dataset order


def test_thresholded_jaccard_zeroes_values_below_065():
    # 1 x 100 images: truth 100 lesion pixels; prediction covers k of them -> Jaccard k/100.
    truth = torch.ones(3, 1, 100)
    pred = torch.zeros(3, 1, 100)
    for i, k in enumerate((64, 65, 90)):
        pred[i, 0, :k] = 1
    m = SegmentationMetrics()
    m.update(pred, truth)
    rows = m.per_image()
    assert [r["iou"] for r in rows] == pytest.approx([0.64, 0.65, 0.90])
    assert [r["thresholded_jaccard"] for r in rows] == pytest.approx([0.0, 0.65, 0.90])
    assert float(m.compute()["thresholded_jaccard"]) == pytest.approx((0.65 + 0.90) / 3)
    assert rows[0]["id"] is None


def test_threshold_semantics_and_input_forms():
    target = torch.tensor([[[1, 1, 0, 0]]])
    m = SegmentationMetrics()
    m.update(torch.tensor([[[0.51, 0.5, 0.49, 0.0]]]), target)  # 0.5 itself is background (strict >)
    assert (m.per_image()[0]["tp"], m.per_image()[0]["fn"]) == (1, 1)
    m = SegmentationMetrics(threshold=0.3)
    m.update(torch.tensor([[[0.51, 0.5, 0.49, 0.0]]]), target)
    assert (m.per_image()[0]["tp"], m.per_image()[0]["fp"]) == (2, 1)
    # bool, {0,1} integer and (B,1,H,W) forms give the same counts.
    for preds in (torch.tensor([[[True, False, True, False]]]), torch.tensor([[[1, 0, 1, 0]]]),
                  torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])):
        m = SegmentationMetrics()
        m.update(preds, target.unsqueeze(1) if preds.ndim == 4 else target)
        row = m.per_image()[0]
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (1, 1, 1, 1)


def test_bad_inputs_raise_clear_errors():
    m = SegmentationMetrics()
    with pytest.raises(ValueError, match="logits"):
        m.update(torch.tensor([[[2.0, -1.0]]]), torch.tensor([[[1, 0]]]))
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="1 channel"):
        m.update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="target"):
        m.update(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 255))
    with pytest.raises(ValueError, match="ids"):
        m.update(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), ids=["only-one"])
    with pytest.raises(ValueError, match="threshold"):
        SegmentationMetrics(threshold=1.5)
    # validate_args=False skips the value checks (no device sync), e.g. for a training loop
    SegmentationMetrics(validate_args=False).update(torch.tensor([[[2.0, -1.0]]]), torch.tensor([[[1, 0]]]))

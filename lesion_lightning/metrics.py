"""Binary lesion-segmentation metrics, pooled and per image, correct under DDP.

Papers report two different aggregations under the same names:

* **pooled** (`dice`, `iou`, ...): TP/FP/TN/FN are summed over every pixel of the set, then the ratio
  is taken once;
* **per-image mean** (`dice_per_image`, ...): the ratio is taken for each image, then averaged; ISIC
  2018 ranked by `thresholded_jaccard`, the per-image Jaccard set to 0 below 0.65, then averaged.

Per-image conventions are those of the ISIC challenge's official scorer (`isic-challenge-scoring`):
a ratio whose denominator is zero scores 1.0 (Dice/Jaccard with empty truth and empty prediction,
sensitivity with empty truth, specificity with an all-lesion truth, precision with an empty
prediction). The pooled ratios use the same rule. `mean_iou` is the two-class mean IoU of Keras'
`MeanIoU` (U-Net paper): mean of lesion IoU and background IoU over the pooled confusion matrix, a
class absent from both truth and prediction being left out of the mean, as Keras does. `dice_eq2` is
that paper's Eq. 2, the soft Dice of the probabilities (not thresholded), pooled over the set with
smooth = 1: (2 sum(p t) + 1) / (sum(t) + sum(p) + 1).

State: pooled TP/FP/TN/FN sums (`dist_reduce_fx="sum"`) and one row of counts per image
(`dist_reduce_fx="cat"`), so that after torchmetrics' sync every process computes exactly the
single-process values. Image ids travel as fixed-width UTF-8 byte rows in a tensor state, so they
are gathered together with their counts. Under DDP the rows come out grouped by process (not in
dataset order), and a `DistributedSampler` that pads the last batch with repeated samples makes
those samples count twice: evaluate with a sampler that does not pad for exact set-level values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "binarize",
    "SegmentationMetrics",
    "ratio_scores",
    "POOLED_KEYS",
    "PER_IMAGE_KEYS",
    "THRESHOLDED_JACCARD_CUTOFF",
]

# ISIC 2018 Task 1: per-image Jaccard below this counts as 0.
THRESHOLDED_JACCARD_CUTOFF = 0.65

_RATIO_KEYS = ("dice", "iou", "sensitivity", "specificity", "accuracy", "precision")
POOLED_KEYS = (*_RATIO_KEYS, "mean_iou", "dice_eq2")
EQ2_SMOOTH = 1.0  # the Keras-style smoothing term of the U-Net paper's Eq. 2
PER_IMAGE_KEYS = (*(f"{k}_per_image" for k in _RATIO_KEYS), "thresholded_jaccard")


def binarize(probabilities: Any, threshold: float) -> Any:
    """The one rule from lesion probabilities to a mask, used by every metric, prediction and saved mask:
    lesion where the probability is strictly above `threshold` (the ISIC scorer's grey level > 128 on the
    [0, 1] scale). A torch tensor or numpy array in, a bool one of the same shape out."""
    return probabilities > threshold


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 1.0 where den == 0 (the official ISIC scorer's rule)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.ones_like(den))


def ratio_scores(tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor) -> dict[str, Tensor]:
    """Dice, IoU, sensitivity, specificity, accuracy and precision from counts (any shape, float64)."""
    return {
        "dice": _safe_ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _safe_ratio(tp, tp + fp + fn),
        "sensitivity": _safe_ratio(tp, tp + fn),
        "specificity": _safe_ratio(tn, tn + fp),
        "accuracy": _safe_ratio(tp + tn, tp + tn + fp + fn),
        "precision": _safe_ratio(tp, tp + fp),
    }


def _keras_mean_iou(tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor) -> Tensor:
    # Keras MeanIoU: per-class IoU = diag / (row + col - diag); classes with a zero denominator are
    # excluded from the mean (divide_no_nan + num_valid_entries).
    dens = torch.stack([tp + fp + fn, tn + fp + fn]).double()
    nums = torch.stack([tp, tn]).double()
    valid = dens > 0
    ious = torch.where(valid, nums / dens.clamp_min(1), torch.zeros_like(dens))
    n_valid = valid.sum()
    return ious.sum() / n_valid if n_valid > 0 else torch.tensor(float("nan"), dtype=torch.float64)


class SegmentationMetrics(Metric):
    """Pooled and per-image binary segmentation metrics (see the module docstring).

    Args:
        threshold: a probability strictly above it is lesion (the ISIC scorer counts grey level
            > 128 as lesion; a probability > 0.5 is the same rule on the [0, 1] scale).
        id_bytes: width of the per-image id rows; an id longer than this in UTF-8 is an error.
        validate_args: check that preds are probabilities/{0,1} and target {0,1} (one device sync
            per `update`; turn off in a training loop once the pipeline is known to be right).

    `update(preds, target, ids=None)`: preds are probabilities in [0, 1] or binary masks (bool or
    {0, 1}), target {0, 1}; both (B, H, W) or (B, 1, H, W). `compute()` returns float tensors for
    `POOLED_KEYS` and `PER_IMAGE_KEYS`; `per_image()` the per-image rows (id, counts, scores).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.5, id_bytes: int = 128, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validate_args = bool(validate_args)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"SegmentationMetrics: threshold must be in [0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.id_bytes = int(id_bytes)
        for name in ("tp", "fp", "tn", "fn"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # soft sums of Eq. 2: sum(p * t) and sum(p) + sum(t)
        for name in ("soft_intersection", "soft_total"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        # (n_images, 4) int64 rows of [tp, fp, tn, fn] and (n_images, id_bytes) uint8 id rows.
        self.add_state("image_counts", default=[], dist_reduce_fx="cat")
        self.add_state("image_ids", default=[], dist_reduce_fx="cat")

    # -- update ------------------------------------------------------------------------------------
    @staticmethod
    def _as_bhw(x: Tensor, what: str) -> Tensor:
        if x.ndim == 4:
            if x.shape[1] != 1:
                raise ValueError(
                    f"SegmentationMetrics: {what} must have 1 channel (B,1,H,W), got shape {tuple(x.shape)}; "
                    "convert a 2-channel softmax output to the lesion probability first"
                )
            x = x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"SegmentationMetrics: {what} must be (B,H,W) or (B,1,H,W), got shape {tuple(x.shape)}")
        return x

    def _check_values(self, preds: Tensor, target: Tensor) -> None:
        # One device sync for all checks; the message is worked out only when something is wrong.
        bad_target = (target != 0) & (target != 1) if target.dtype != torch.bool else torch.zeros_like(target)
        if preds.dtype == torch.bool:
            bad_preds = torch.zeros_like(preds)
        elif preds.is_floating_point():
            bad_preds = (preds < 0) | (preds > 1)
        else:
            bad_preds = (preds != 0) & (preds != 1)
        if not bool(bad_target.any() | bad_preds.any()):
            return
        if bad_target.any():
            raise ValueError("SegmentationMetrics: target must be a {0, 1} mask")
        if preds.is_floating_point():
            raise ValueError(
                "SegmentationMetrics: float preds must be probabilities in [0, 1] (got values "
                f"in [{float(preds.min()):.3g}, {float(preds.max()):.3g}]); apply sigmoid/softmax to logits first"
            )
        raise ValueError("SegmentationMetrics: integer preds must be a {0, 1} mask")

    def _binarize(self, preds: Tensor) -> Tensor:
        if preds.dtype == torch.bool:
            return preds
        if preds.is_floating_point():
            return binarize(preds, self.threshold)
        return preds != 0

    def _encode_ids(self, ids: Sequence[Any] | Tensor | None, n: int) -> Tensor:
        rows = torch.zeros((n, self.id_bytes), dtype=torch.uint8)
        if ids is None:
            return rows.to(self.device)
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or len(ids) != n:
            raise ValueError(f"SegmentationMetrics: ids must be a sequence of {n} ids (one per image), got {ids!r}")
        for i, image_id in enumerate(ids):
            raw = str(image_id).encode("utf-8")
            if not raw or len(raw) > self.id_bytes:
                raise ValueError(
                    f"SegmentationMetrics: image id {image_id!r} is empty or longer than id_bytes={self.id_bytes} bytes"
                )
            rows[i, : len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        return rows.to(self.device)

    def update(self, preds: Tensor, target: Tensor, ids: Sequence[Any] | Tensor | None = None) -> None:
        preds = self._as_bhw(preds, "preds")
        target = self._as_bhw(target, "target")
        if preds.shape != target.shape:
            raise ValueError(
                f"SegmentationMetrics: preds shape {tuple(preds.shape)} != target shape {tuple(target.shape)}"
            )
        if self.validate_args:
            self._check_values(preds, target)
        pred_pos = self._binarize(preds)
        true_pos = target != 0
        soft = preds.double()  # probabilities as they are; a bool or {0, 1} mask counts as 0/1
        truth = true_pos.double()
        self.soft_intersection += (soft * truth).sum()
        self.soft_total += soft.sum() + truth.sum()
        # Per-image counts, (B, 4). Counted here rather than with torchmetrics' `binary_stat_scores`
        # (samplewise), whose output squeezes away the batch dimension and fails for B == 1.
        dims = (1, 2)
        tp = (pred_pos & true_pos).sum(dims)
        n_pred = pred_pos.sum(dims)
        n_true = true_pos.sum(dims)
        n_pixels = pred_pos.shape[1] * pred_pos.shape[2]
        fp, fn = n_pred - tp, n_true - tp
        counts = torch.stack([tp, fp, n_pixels - tp - fp - fn, fn], dim=1).long()
        self.tp += counts[:, 0].sum()
        self.fp += counts[:, 1].sum()
        self.tn += counts[:, 2].sum()
        self.fn += counts[:, 3].sum()
        self.image_counts.append(counts)
        self.image_ids.append(self._encode_ids(ids, counts.shape[0]))

    # -- compute -----------------------------------------------------------------------------------
    def _image_counts(self) -> Tensor:
        if isinstance(self.image_counts, list) and not self.image_counts:
            return torch.zeros((0, 4), dtype=torch.long, device=self.device)
        return dim_zero_cat(self.image_counts).reshape(-1, 4).long()

    def compute(self) -> dict[str, Tensor]:
        pooled = ratio_scores(self.tp, self.fp, self.tn, self.fn)
        out = {k: v.float() for k, v in pooled.items()}
        out["mean_iou"] = _keras_mean_iou(self.tp, self.fp, self.tn, self.fn).float()
        out["dice_eq2"] = ((2 * self.soft_intersection + EQ2_SMOOTH) / (self.soft_total + EQ2_SMOOTH)).float()
        counts = self._image_counts()
        per = ratio_scores(*counts.unbind(dim=1))
        for k, v in per.items():
            out[f"{k}_per_image"] = v.mean().float()
        thr_jac = torch.where(per["iou"] >= THRESHOLDED_JACCARD_CUTOFF, per["iou"], torch.zeros_like(per["iou"]))
        out["thresholded_jaccard"] = thr_jac.mean().float()
        return out

    def per_image(self) -> list[dict[str, Any]]:
        """One dict per image: `id` (None when not given), `tp, fp, tn, fn` and the ratio scores.

        Synced across processes like `compute()` (rows grouped by process under DDP).
        """
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
            distributed_available=self.distributed_available_fn,
        ):
            counts = self._image_counts().cpu()
            if isinstance(self.image_ids, list) and not self.image_ids:
                id_rows = torch.zeros((0, self.id_bytes), dtype=torch.uint8)
            else:
                id_rows = dim_zero_cat(self.image_ids).reshape(-1, self.id_bytes).cpu()
        scores = ratio_scores(*counts.unbind(dim=1))
        rows = []
        for i in range(counts.shape[0]):
            raw = bytes(id_rows[i].tolist()).rstrip(b"\x00")
            row: dict[str, Any] = {"id": raw.decode("utf-8") if raw else None}
            row.update({k: int(v) for k, v in zip(("tp", "fp", "tn", "fn"), counts[i].tolist())})
            row.update({k: float(v[i]) for k, v in scores.items()})
            row["thresholded_jaccard"] = row["iou"] if row["iou"] >= THRESHOLDED_JACCARD_CUTOFF else 0.0
            rows.append(row)
        return rows

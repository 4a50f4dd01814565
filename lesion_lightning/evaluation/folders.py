"""Score a folder of predicted masks against a folder of ground truths (`lesion-lightning evaluate`).

Files are matched by image id: the file name without extension and without a trailing
`_segmentation` (ISIC), `_lesion` (PH2) or `_mask`, so `ISIC_0000001_segmentation.png` and
`ISIC_0000001.png` match each other; any image extension is accepted on both sides. The ground-truth
folder is read with the rule of `predict --gt` (`lesion_lightning.inference.files.index_masks`): searched
recursively, and where it holds files named like masks only those are ground truth, so a dataset folder
with its images beside their masks (flat ISIC, PH2) works. Every image file of the (flat) prediction
folder is a prediction. Scoring uses
`SegmentationMetrics`, the same code as training, hence the ISIC scorer's per-image conventions.

Ground truths are read with `load_mask` (strictly binary, any encoding). A two-valued prediction is
read the same way; a prediction with more grey levels (a saved probability map) is lesion where its
8-bit level is > --threshold (default 128, as the ISIC challenge scorer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesion_lightning.data.errors import DataError
from lesion_lightning.inference.files import index_masks
from lesion_lightning.utils.report_files import write_csv

if TYPE_CHECKING:  # torch/torchmetrics are imported when scoring runs: `--help` stays fast
    import numpy as np

    from lesion_lightning.metrics import SegmentationMetrics

JSON_POOLED = ("dice", "iou", "sensitivity", "specificity", "accuracy")
JSON_PER_IMAGE = ("dice", "iou", "sensitivity", "specificity", "accuracy", "thresholded_jaccard")
CSV_COLUMNS = ("id", "gt_file", "pred_file", "dice", "iou", "sensitivity", "specificity", "accuracy",
               "precision", "thresholded_jaccard", "tp", "fp", "tn", "fn")


def _read_prediction(path: Path, threshold: int) -> np.ndarray:
    import numpy as np
    from PIL import Image

    from lesion_lightning.data.io import load_mask
    from lesion_lightning.metrics import binarize

    try:
        return load_mask(path)
    except DataError as exc:
        if "not binary" not in exc.problem:
            raise
    # A soft map: threshold its 8-bit grey levels (the decode already succeeded above).
    with Image.open(path) as im:
        levels = np.asarray(im.convert("L"))
    return binarize(levels, threshold).astype(np.uint8)


def evaluate_folders(pred_dir: Path, gt_dir: Path, threshold: int = 128, missing: str = "error"
                     ) -> tuple[SegmentationMetrics, list[dict[str, Any]]]:
    """Score every ground truth of `gt_dir`; returns the filled metric and the per-image rows."""
    import numpy as np
    import torch

    from lesion_lightning.data.io import IMAGE_EXTENSIONS, load_mask
    from lesion_lightning.metrics import SegmentationMetrics

    if not 0 <= threshold <= 254:
        raise ValueError(f"--threshold must be a grey level in [0, 254], got {threshold}")
    gts = index_masks(gt_dir, "ground-truth")
    if not gts:
        raise DataError(gt_dir, f"no ground-truth masks ({', '.join(IMAGE_EXTENSIONS)}) found")
    preds = index_masks(pred_dir, "prediction", recursive=False, mask_names=False)
    absent = [k for k in gts if k not in preds]
    if absent and missing == "error":
        shown = ", ".join(gts[k].name for k in absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise DataError(pred_dir, f"no prediction for {len(absent)} ground-truth mask(s): {shown} "
                                  "(use --missing zero to score them as empty predictions)")
    metric = SegmentationMetrics()
    files = []
    for key, gt_path in gts.items():
        gt = load_mask(gt_path)
        pred_path = preds.get(key)
        if pred_path is None:
            pred = np.zeros_like(gt)
        else:
            pred = _read_prediction(pred_path, threshold)
            if pred.shape != gt.shape:
                raise DataError(pred_path, f"prediction size {pred.shape[1]}x{pred.shape[0]} != ground-truth size "
                                           f"{gt.shape[1]}x{gt.shape[0]} of {gt_path}")
        metric.update(torch.from_numpy(pred > 0)[None], torch.from_numpy(gt)[None], ids=[key])
        files.append((gt_path, pred_path))
    rows = metric.per_image()
    for row, (gt_path, pred_path) in zip(rows, files):
        row["gt_file"] = str(gt_path)
        row["pred_file"] = "" if pred_path is None else str(pred_path)
    return metric, rows


def summary(values: dict[str, float], num_images: int) -> dict:
    """The `--json` document from `SegmentationMetrics.compute()` values."""
    return {
        "num_images": num_images,
        "pooled": {k: values[k] for k in JSON_POOLED},
        "per_image": {k: values[k if k == "thresholded_jaccard" else f"{k}_per_image"] for k in JSON_PER_IMAGE},
    }


def write_per_image_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    write_csv(path, rows, CSV_COLUMNS)

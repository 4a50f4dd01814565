"""Score a trained run's own val or test subset at each image's original size (what the ISIC challenge scored).

Validation and `test` score at the network input size (the mask resized to it). Here the model predicts
every image of the subset (the run's split.json ids, under the run's dataset root) with the run's
preprocessing, its probabilities are resized (bilinear) back to the image's own size and scored against
the original mask by `SegmentationMetrics` at the run's threshold: the same engine as `cross-eval
--resolution original`. Used by `test/validate --score_resolution original` and by `reproduce` for a
table whose `scoring.resolution` is `original`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lesion_lightning.evaluation.cross_options import CrossEvalOptions

RESULT_SUFFIX = "_original_size"


def score_subset_original_size(ckpt: str | Path, subset: str, device: str = "auto", batch_size: int = 4,
                               save_dir: Path | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(metrics, per-image rows) of the checkpoint's run on its `subset` (val or test) at original size;
    `save_dir`: also write the binary predictions and masks there (pred/, gt/) as the ISIC scorer reads them."""
    from lesion_lightning.evaluation.cross_dataset import _load, score_dataset
    from lesion_lightning.evaluation.training_set import cache_dir_of, resolve_training_set

    options = CrossEvalOptions(datasets=[], resolution="original", device=device, batch_size=batch_size)
    options.check()
    predictor = _load(ckpt, options)
    cache_dir = cache_dir_of(None)
    scored = resolve_training_set(predictor.loaded, train_root=None, seen=[subset], cache_dir=cache_dir)
    result = score_dataset(predictor, scored.records, set(), resolution="original", batch_size=batch_size,
                           cache_dir=cache_dir, save_dir=save_dir)
    values = {**result["all"], "num_images": float(result["num_images"])}
    return values, result["per_image"]


def write_original_size_section(run_dir: Path, stage: str, ckpt: str | Path) -> dict[str, float]:
    """Score `stage`'s subset of the run at original size into metrics.json `<stage>_original_size` (and
    per_image_<stage>_original_size.csv); returns the metrics."""
    from lesion_lightning.utils.report_files import write_csv

    values, rows = score_subset_original_size(ckpt, stage)
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics[stage + RESULT_SUFFIX] = {**values, "resolution": "original", "checkpoint": str(ckpt)}
    path.write_text(json.dumps(metrics, indent=2))
    if rows:
        write_csv(run_dir / f"per_image_{stage}{RESULT_SUFFIX}.csv", rows, list(rows[0]))
    return values

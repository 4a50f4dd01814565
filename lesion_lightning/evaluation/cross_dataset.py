"""Score a trained model on other datasets, with no retraining (LANET Table 9): the one cross-dataset engine,
used by `lesion-lightning cross-eval`, its jobs files and the table runner's cross-dataset tables.

For each test dataset:

1. its root: `data_roots[name]`, else the embedded sample in ../shared/data; else, only when asked for
   (`synthetic`), the synthetic stand-in in that layout (generated once into the cache, as
   `LesionDataModule` does with `root: null`), whose entry is marked SYNTHETIC in every output
   (`data_source`); without it a dataset with no data is an error. Every labelled image of the dataset is
   used (`subsets` restricts ISIC datasets to official subsets, e.g. `test`);
2. the images it shares with the training set are found by id and by byte-identical image files
   (`lesion_lightning.data.overlap`). The training set is the run's `split.json` ids of the seen
   subsets (default `train`) under the run's dataset root (`train_root` overrides);
3. the model predicts every image with the run's preprocessing (working size and transform
   set of its config, `lesion_lightning.inference`), and `SegmentationMetrics` (the training
   code) scores it, at the run's threshold. By default predictions and masks are compared at the
   **working size**, exactly as validation does (mask resized with nearest neighbour);
   resolution `original` upsamples the probabilities to each image's own size and scores against
   the original mask instead;
4. two sets of numbers: **all** images, and **unseen** images only (shared ones left out). Both are
   always reported; `exclude_overlap` makes unseen-only the headline.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets import get_dataset_spec
from lesion_lightning.data.errors import DataError
from lesion_lightning.evaluation.cross_options import CrossEvalError, CrossEvalOptions
from lesion_lightning.evaluation.folders import summary
from lesion_lightning.evaluation.training_set import (
    SYNTHETIC,
    TrainingSet,
    cache_dir_of,
    resolve_training_set,
    test_records,
    test_root,
)


def _write_png(path: Path, mask01: Any) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.asarray(mask01) > 0).astype(np.uint8) * 255).save(path)


def _scored_pairs(predictor: Any, ds: Any, resolution: str, batch_size: int):
    """(id, probabilities (1, 1, h, w), mask (1, 1, h, w)) per image, predicted `batch_size` at a time."""
    import torch

    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        if resolution == "working":
            probs = predictor.forward_batch(torch.stack([it["image"] for it in items])).cpu()
            masks = torch.stack([it["mask"] for it in items])
            pairs = [(probs[j:j + 1], masks[j:j + 1]) for j in range(len(items))]
        else:  # images differ in size: full-size probabilities, scored one by one
            full = predictor.predict_batch([predictor.preprocess(it["image"]) for it in items],
                                           [it["image"].shape[:2] for it in items])
            pairs = [(torch.from_numpy(p)[None, None], torch.from_numpy(it["mask"]).float()[None, None])
                     for p, it in zip(full, items)]
        for it, (p, m) in zip(items, pairs):
            yield it["id"], p.clamp(0, 1), m


def _dataset_for(predictor: Any, records: list[Any], resolution: str, cache_dir: Path | None) -> Any:
    from lesion_lightning.data.cache import DecodeCache
    from lesion_lightning.data.dataset import LesionDataset

    if resolution != "working":
        return LesionDataset(records, transform=None, cache=None, image_size=None)
    # As validation: decode once at the working size (cache), then the evaluation transform.
    size = predictor.preprocessing.image_size
    cache = DecodeCache(cache_dir / "decoded", size) if cache_dir is not None else None
    return LesionDataset(records, transform=predictor.preprocessing.transform(), cache=cache, image_size=size)


def score_dataset(predictor: Any, records: list[Any], seen_ids: set[str], *, resolution: str, batch_size: int,
                  cache_dir: Path | None, save_dir: Path | None = None) -> dict[str, Any]:
    """Predict and score `records`: {"all": values, "unseen": values or None, "per_image": rows}."""
    from lesion_lightning.metrics import SegmentationMetrics, binarize

    threshold = predictor.threshold
    all_metric = SegmentationMetrics(threshold=threshold)
    unseen_metric = SegmentationMetrics(threshold=threshold)
    num_unseen = 0
    ds = _dataset_for(predictor, records, resolution, cache_dir)
    for image_id, p, m in _scored_pairs(predictor, ds, resolution, batch_size):
        all_metric.update(p, m, ids=[image_id])
        if image_id not in seen_ids:
            unseen_metric.update(p, m, ids=[image_id])
            num_unseen += 1
        if save_dir is not None:
            _write_png(save_dir / "pred" / f"{image_id}.png", binarize(p[0, 0], threshold).numpy())
            _write_png(save_dir / "gt" / f"{image_id}_segmentation.png", m[0, 0].numpy())
    rows = all_metric.per_image()
    for row in rows:
        row["seen"] = row["id"] in seen_ids
    values = {k: float(v) for k, v in all_metric.compute().items()}
    unseen = {k: float(v) for k, v in unseen_metric.compute().items()} if num_unseen else None
    return {"all": values, "unseen": unseen, "num_images": len(records), "num_unseen": num_unseen, "per_image": rows}


def _summary(values: dict[str, float] | None, num_images: int) -> dict[str, Any] | None:
    """`evaluate`'s summary plus the pooled two-class mean IoU and Eq. 2 soft Dice, so that a cross-dataset
    table can print them like any other table (`reproduce --metrics mean_iou,dice_eq2`)."""
    if values is None:
        return None
    doc = summary(values, num_images)
    doc["pooled"].update({k: values[k] for k in ("mean_iou", "dice_eq2") if k in values})
    return doc


def evaluate_dataset(predictor: Any, dataset: str, training: TrainingSet, options: CrossEvalOptions,
                     cache_dir: Path, save_dir: Path | None) -> dict[str, Any]:
    """One test dataset's entry of the document; a data problem is recorded as its `error`."""
    from lesion_lightning.data.overlap import find_overlap

    entry: dict[str, Any] = {"dataset": dataset, "label": get_dataset_spec(dataset).label}
    try:
        root, source, data_source = test_root(dataset, options.data_roots, cache_dir, options.synthetic)
        entry.update(root=str(root), root_source=source, data_source=data_source)
        if data_source == SYNTHETIC:
            entry["label"] += " (SYNTHETIC)"
        records, unlabelled = test_records(dataset, root, options.subsets)
        shared = find_overlap(training.records, records)
        scored = score_dataset(predictor, records, shared.ids_b, resolution=options.resolution,
                               batch_size=options.batch_size, cache_dir=cache_dir, save_dir=save_dir)
        entry.update(
            num_images=len(records), num_unlabelled_skipped=unlabelled,
            num_shared=len(shared.ids_b), num_unseen=scored["num_unseen"], overlap=shared.to_dict(),
            all=_summary(scored["all"], len(records)), unseen=_summary(scored["unseen"], scored["num_unseen"]),
            per_image=[{**row, "data_source": data_source} for row in scored["per_image"]],
        )
        entry["headline"] = entry["unseen" if options.exclude_overlap else "all"]
        if dataset == training.dataset:
            entry["note"] = "same dataset as training: 'unseen' = images outside the seen subsets"
    except (DataError, ValueError, OSError) as err:
        entry["error"] = str(err)
    return entry


def _load(ckpt: str | Path, options: CrossEvalOptions) -> Any:
    from lesion_lightning.inference import CheckpointError, Predictor, load_task, pick_device

    try:
        loaded = load_task(ckpt, trust_checkpoint=options.trust_checkpoint, device=pick_device(options.device))
    except CheckpointError as err:
        raise CrossEvalError(str(err)) from err
    cache = Path(options.cache).expanduser() if options.cache else None
    try:
        return Predictor(loaded, tta=options.tta, backend=options.backend, cache_dir=cache)
    except ValueError as err:
        raise CrossEvalError(str(err)) from err


def _document(predictor: Any, training: TrainingSet, options: CrossEvalOptions, name: str | None) -> dict[str, Any]:
    loaded = predictor.loaded
    run_name = loaded.run_dir.name if loaded.run_dir is not None else loaded.checkpoint_path.stem
    working = options.resolution == "working"
    return {
        "name": name or run_name,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "checkpoint": str(loaded.checkpoint_path),
        "run_dir": None if loaded.run_dir is None else str(loaded.run_dir),
        "model": loaded.model_name,
        "model_kwargs": loaded.model_kwargs,
        "threshold": predictor.threshold,
        "tta": options.tta,
        "backend": predictor.backend_note,
        "preprocessing": loaded.preprocessing.as_dict(),
        "resolution": options.resolution,
        "resolution_note": ("predictions and masks compared at the run's working size (mask resized with nearest "
                            "neighbour), as in validation" if working else
                            "probabilities resized (bilinear) to each image's own size, compared with the original mask"),
        "training_set": training.as_dict(),
        "exclude_overlap": options.exclude_overlap,
        "headline": "unseen" if options.exclude_overlap else "all",
    }


def cross_evaluate(ckpt: str | Path, options: CrossEvalOptions, *, save_predictions_to: Path | None = None,
                   paper: dict[str, dict[str, float]] | None = None, name: str | None = None) -> dict[str, Any]:
    """Evaluate one trained model on `options.datasets`; returns the JSON document (see the module doc)."""
    options.check()
    cache_dir = cache_dir_of(options.cache)
    predictor = _load(ckpt, options)
    training = resolve_training_set(predictor.loaded, train_root=options.train_root, seen=options.seen,
                                    cache_dir=cache_dir)
    results = []
    for dataset in options.datasets:
        save_dir = save_predictions_to / dataset if save_predictions_to is not None else None
        entry = evaluate_dataset(predictor, dataset, training, options, cache_dir, save_dir)
        if dataset in (paper or {}):
            entry["paper"] = dict(paper[dataset])
        results.append(entry)
    return {**_document(predictor, training, options, name), "results": results}

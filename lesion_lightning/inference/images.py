"""Predict image files into a folder: masks, overlays and a CSV of per-image statistics.

For each input image (any size, any format `load_image` reads) `predict_files` writes, at the image's
original resolution:
- `<id>_segmentation.png`: the binary mask, 0/255 (the ISIC naming, so `lesion-lightning evaluate` reads it);
- `<id>_overlay.png`: the image with the predicted lesion contour in green and, with ground truth, the
  ground-truth contour in red (as in the LANET figures);
- one row of `predictions.csv`: id, file, width, height, lesion area (pixels and % of the image),
  equivalent diameter (diameter of the disc of that area, pixels), bounding box (x, y, w, h) and, with
  ground truth, the image's Dice and IoU (from `SegmentationMetrics`, as every other score).

Decoding and writing run in background threads while the model predicts batches. An unreadable or
corrupt file is reported and skipped (listed in `skipped.csv`), never raised.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from lesion_lightning.inference.files import assign_ids, image_id, index_masks
from lesion_lightning.utils.report_files import write_csv

if TYPE_CHECKING:
    import numpy as np

    from lesion_lightning.inference.predictor import Predictor

CSV_COLUMNS = ("id", "file", "width", "height", "lesion_area_px", "lesion_area_pct", "equivalent_diameter_px",
               "bbox_x", "bbox_y", "bbox_w", "bbox_h", "components", "largest_area_px", "largest_bbox_x",
               "largest_bbox_y", "largest_bbox_w", "largest_bbox_h", "mean_probability", "dice", "iou")
TABLES = ("predictions.csv", "skipped.csv")


class OutputError(ValueError):
    """An output folder `predict` must not write into (it holds the inputs, or files it did not create)."""


# -- per-image statistics ----------------------------------------------------------------------------
def _box(x: int, y: int, w: int, h: int, prefix: str = "") -> dict[str, int]:
    return {f"{prefix}bbox_x": int(x), f"{prefix}bbox_y": int(y), f"{prefix}bbox_w": int(w), f"{prefix}bbox_h": int(h)}


def mask_statistics(mask: np.ndarray) -> dict[str, Any]:
    """Of a binary (H, W) mask: the totals (area in px and %, equivalent diameter, bounding box of every
    lesion pixel), the number of 8-connected components and the largest one's area and bounding box (stray
    blobs make the total box cover much more than the lesion)."""
    import cv2
    import numpy as np

    h, w = mask.shape
    area = int(np.count_nonzero(mask))
    stats: dict[str, Any] = {"width": w, "height": h, "lesion_area_px": area,
                             "lesion_area_pct": round(100.0 * area / (h * w), 4),
                             "equivalent_diameter_px": round(math.sqrt(4.0 * area / math.pi), 2)}
    if not area:
        empty = ("bbox_x", "bbox_y", "bbox_w", "bbox_h", "largest_area_px", "largest_bbox_x", "largest_bbox_y",
                 "largest_bbox_w", "largest_bbox_h")
        return {**stats, **dict.fromkeys(empty, ""), "components": 0}
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    stats.update(_box(cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1))
    count, _, comp, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(comp[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, largest_area = comp[largest]
    return {**stats, "components": count - 1, "largest_area_px": int(largest_area), **_box(x, y, bw, bh, "largest_")}


def overlap_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Dice and IoU of one binary mask against its ground truth, by `SegmentationMetrics` (as every score)."""
    import torch

    from lesion_lightning.metrics import SegmentationMetrics

    metric = SegmentationMetrics(validate_args=False)
    metric.update(torch.from_numpy(pred != 0)[None], torch.from_numpy(gt != 0)[None])
    row = metric.per_image()[0]
    return {"dice": round(row["dice"], 6), "iou": round(row["iou"], 6)}


# -- one image -----------------------------------------------------------------------------------------
@dataclass
class Loaded:
    index: int
    id: str
    path: Path
    image: Any = None  # (H, W, 3) uint8
    tensor: Any = None  # preprocessed (3, h, w)
    gt: Any = None
    error: str | None = None


def _load(item: tuple[int, str, Path], predictor: Predictor, gt_index: dict[str, Path] | None) -> Loaded:
    import warnings

    from lesion_lightning.data.errors import ImageConversionWarning
    from lesion_lightning.data.io import load_image, load_mask

    index, key, path = item
    out = Loaded(index, key, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageConversionWarning)
            out.image = load_image(path)
        out.tensor = predictor.preprocess(out.image)
    except Exception as exc:  # noqa: BLE001 - any per-file failure is reported and skipped, never fatal
        out.error = str(exc) if str(path) in str(exc) else f"{path}: {type(exc).__name__}: {exc}"
        return out
    if gt_index is not None:
        gt_path = gt_index.get(image_id(path)) or gt_index.get(key)
        if gt_path is not None:
            try:
                out.gt = load_mask(gt_path, expected_hw=out.image.shape[:2])
            except Exception as exc:  # noqa: BLE001 - reported; the prediction itself is still written
                out.gt = str(exc) if str(gt_path) in str(exc) else f"{gt_path}: {exc}"
    return out


def _write(item: Loaded, probs: np.ndarray, threshold: float, output: Path, overlay: bool) -> dict[str, Any]:
    import cv2
    import numpy as np

    from lesion_lightning.metrics import binarize
    from lesion_lightning.utils.visualize import overlay_contours

    mask = binarize(probs, threshold).astype(np.uint8)
    # Fast zlib settings (lossless either way): run-length for the two-level mask, Huffman-only for the
    # photographic overlay (about 1.4x faster than the default filters at level 1, and smaller).
    mask_png = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    photo_png = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    mask_path = output / f"{item.id}_segmentation.png"
    if not cv2.imwrite(str(mask_path), mask * 255, mask_png):
        raise OSError(f"{mask_path}: could not write the mask")
    gt = item.gt if isinstance(item.gt, np.ndarray) else None
    if overlay:
        drawn = overlay_contours(item.image, pred=mask, gt=gt)
        overlay_path = output / f"{item.id}_overlay.png"
        if not cv2.imwrite(str(overlay_path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), photo_png):
            raise OSError(f"{overlay_path}: could not write the overlay")
    row: dict[str, Any] = {"id": item.id, "file": str(item.path), **mask_statistics(mask),
                           "mean_probability": round(float(probs.mean()), 6)}
    if gt is not None:
        row.update(overlap_scores(mask, gt))
    return row


def _prefetch(items: list[tuple[int, str, Path]], pool: ThreadPoolExecutor, fn, depth: int) -> Iterator[Loaded]:
    """Results of fn(item) in order, with up to `depth` items decoded ahead in the pool."""
    queue: deque[Future] = deque()
    it = iter(items)
    for item in it:
        queue.append(pool.submit(fn, item))
        if len(queue) >= depth:
            break
    while queue:
        result = queue.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            queue.append(pool.submit(fn, nxt))
        yield result


# -- the pipeline ------------------------------------------------------------------------------------
@dataclass
class PredictReport:
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]  # (file, problem)
    gt_problems: list[str]
    seconds: float


@dataclass
class _Run:
    """The state of one `predict_files` call: batches go to the model, results to the writer threads."""

    predictor: Predictor
    output: Path
    overlay: bool
    writers: ThreadPoolExecutor
    bar: Any
    backlog: int
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pending: deque = field(default_factory=deque)
    batch: list[Loaded] = field(default_factory=list)

    def skip(self, path: Path, problem: str) -> None:
        self.skipped.append((str(path), problem))
        self.bar.update(1)

    def drain(self, limit: int) -> None:
        while len(self.pending) > limit:
            item, fut = self.pending.popleft()
            try:
                self.rows[item.index] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a failed write skips that image only
                self.skipped.append((str(item.path), f"writing the outputs failed: {exc}"))
            self.bar.update(1)

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        try:
            probs = self.predictor.predict_batch([b.tensor for b in batch], [b.image.shape[:2] for b in batch])
        except RuntimeError as exc:  # e.g. out of memory on a batch: report its files, keep going
            for b in batch:
                self.skip(b.path, f"prediction failed: {exc}")
            return
        for b, p in zip(batch, probs):
            self.pending.append((b, self.writers.submit(_write, b, p, self.predictor.threshold, self.output,
                                                        self.overlay)))
            b.tensor = None
        self.drain(self.backlog)


def _write_tables(output: Path, rows: list[dict[str, Any]], skipped: list[tuple[str, str]], with_gt: bool) -> None:
    write_csv(output / "predictions.csv", rows, CSV_COLUMNS if with_gt else CSV_COLUMNS[:-2])
    skipped_csv = output / "skipped.csv"
    if skipped:
        write_csv(skipped_csv, ({"file": f, "problem": p} for f, p in skipped), ("file", "problem"))
    elif skipped_csv.exists():
        skipped_csv.unlink()


def check_output(output: Path, inputs: list[Path], ids: list[str], overlay: bool, overwrite: bool = False) -> None:
    """Refuse (`OutputError`) an output folder holding any input (images or ground-truth masks), and, unless
    `overwrite`, one where a file this run writes already exists: predict never replaces a file silently."""
    out = output.expanduser().resolve()
    inside = [p for p in inputs if out in p.resolve().parents]
    if inside:
        raise OutputError(f"--output {output}: the folder holds input files ({inside[0]}"
                          f"{f' and {len(inside) - 1} more' if len(inside) > 1 else ''}), which predictions "
                          "could replace; choose a folder outside the inputs")
    names = [f"{i}_segmentation.png" for i in ids] + ([f"{i}_overlay.png" for i in ids] if overlay else [])
    existing = [n for n in (*names, *TABLES) if (output / n).exists()]
    if existing and not overwrite:
        raise OutputError(f"--output {output}: {len(existing)} file(s) this run would write already exist "
                          f"({', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}); choose a new folder, "
                          "or pass --overwrite to replace them")


def predict_files(predictor: Predictor, files: list[Path], output: Path, *, batch_size: int = 4,
                  gt_dir: Path | None = None, overlay: bool = True, workers: int = 2,
                  progress: bool = True, overwrite: bool = False) -> PredictReport:
    """Predict every file into `output`; bad files are skipped and reported, never raised. The output folder
    is checked first (`check_output`)."""
    from tqdm.auto import tqdm

    gt_index = index_masks(gt_dir, "--gt") if gt_dir is not None else None
    ids = assign_ids(files)
    check_output(output, [*files, *(gt_index or {}).values()], ids, overlay, overwrite)
    output.mkdir(parents=True, exist_ok=True)
    items = [(i, key, path) for i, (key, path) in enumerate(zip(ids, files))]
    gt_problems: list[str] = []
    started = time.perf_counter()
    workers = max(1, workers)
    bar = tqdm(total=len(items), unit="img", desc="predict", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as readers, \
            ThreadPoolExecutor(workers, thread_name_prefix="write") as writers:
        run = _Run(predictor, output, overlay, writers, bar, backlog=2 * workers * max(1, batch_size))
        loads = _prefetch(items, readers, lambda it: _load(it, predictor, gt_index), depth=2 * batch_size + workers)
        for loaded in loads:
            if loaded.error is not None:
                run.skip(loaded.path, loaded.error)
                continue
            if isinstance(loaded.gt, str):
                gt_problems.append(loaded.gt)
                loaded.gt = None
            elif gt_index is not None and loaded.gt is None:
                gt_problems.append(f"{loaded.path}: no ground-truth mask for id {loaded.id!r} in {gt_dir}")
            run.batch.append(loaded)
            if len(run.batch) >= batch_size:
                run.flush()
        run.flush()
        run.drain(0)
    bar.close()
    ordered = [run.rows[i] for i in sorted(run.rows)]
    _write_tables(output, ordered, run.skipped, gt_index is not None)
    return PredictReport(ordered, run.skipped, gt_problems, time.perf_counter() - started)

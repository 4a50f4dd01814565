"""How a table scores and which network it scores: the `scoring:` and `protocol:` blocks of a table spec.

`scoring:` (every train and cross-dataset table; the papers differ, so each table says which it uses):

    aggregation  pooled (TP/FP/TN/FN summed over every scored pixel, one ratio) | per-image (ratio per
                 image, then the mean; `jsc_th` is per-image whatever this says)
    resolution   network (predictions and masks at the network input size, as validation does) |
                 original (probabilities resized back to each image's own size, scored against its
                 original mask: what the ISIC challenge scored)
    threshold    probability above which a pixel is lesion (metrics.binarize)
    classes      lesion (IoU of the lesion class) | two-class-mean (the paper's IoU is the mean of the
                 lesion and background IoU: print it as the `mean_iou` metric)
    why          where the choice comes from (the paper's words, its official code, or our reason)

`protocol:` (which trained network a table scores):

    checkpoint   best-val-dice (default) | final-epoch (the network after the last epoch) |
                 lowest-val-loss (the epoch with the lowest validation loss)
    scored_on    test (default) | val (the paper reports its validation set)
    why          where the choice comes from
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# metric name -> (key in metrics.json or the complexity record, ratio?). Ratio metrics are stored as
# fractions and printed in the table's units; the others are printed as they are.
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("accuracy", True),
    "dice": ("dice", True),
    "iou": ("iou", True),
    "sensitivity": ("sensitivity", True),
    "specificity": ("specificity", True),
    "precision": ("precision", True),
    "mean_iou": ("mean_iou", True),
    "dice_eq2": ("dice_eq2", True),
    "jsc_th": ("thresholded_jaccard", True),
    "dice_per_image": ("dice_per_image", True),
    "iou_per_image": ("iou_per_image", True),
    "params_m": ("params_m", False),
    "layers": ("layers", False),
    "memory_mb": ("memory_mb", False),
    "gflops": ("gflops", False),
    "macs_g": ("macs_g", False),
    "ms": ("ms", False),
    "fps": ("fps", False),
}
METRIC_LABELS = {
    "accuracy": "Accuracy", "dice": "Dice", "iou": "IoU", "sensitivity": "Sensitivity",
    "specificity": "Specificity", "precision": "Precision", "mean_iou": "IoU (2-class mean)",
    "dice_eq2": "Dice (Eq. 2, soft)", "jsc_th": "JSC_th", "dice_per_image": "Dice (per image)",
    "iou_per_image": "Jaccard (per image)", "params_m": "Params (M)", "layers": "Layers",
    "memory_mb": "Memory (MB)", "gflops": "GFLOPs", "macs_g": "MACs (G)", "ms": "ms", "fps": "FPS",
}
# Ratio metrics that `aggregation: per-image` reads as their per-image mean.
PER_IMAGE_FORMS = {m: f"{m}_per_image" for m in ("accuracy", "dice", "iou", "sensitivity", "specificity", "precision")}
POOLED_ONLY = ("mean_iou", "dice_eq2")  # no per-image form

AGGREGATIONS = ("pooled", "per-image")
RESOLUTIONS = ("network", "original")
CLASSES = ("lesion", "two-class-mean")
CHECKPOINTS = ("best-val-dice", "final-epoch", "lowest-val-loss")
SCORED_ON = ("test", "val")
SCORING_KEYS = {"aggregation", "resolution", "threshold", "classes", "why"}
PROTOCOL_KEYS = {"checkpoint", "scored_on", "why"}


class SpecError(ValueError):
    """A table spec is invalid; the message names the file and the key."""


def spec_error(path: Path, key: str, message: str) -> SpecError:
    return SpecError(f"{path}: {key}: {message}")


@dataclass(frozen=True)
class Scoring:
    aggregation: str = "pooled"
    resolution: str = "network"
    threshold: float = 0.5
    classes: str = "lesion"
    why: str = ""

    def describe(self) -> str:
        return (f"{self.aggregation} confusion counts" if self.aggregation == "pooled" else "mean of per-image scores") \
            + f", at {'the network input size' if self.resolution == 'network' else 'each image’s original size'}" \
            + f", threshold {self.threshold:g}" \
            + (", lesion class only" if self.classes == "lesion" else ", IoU = mean of lesion and background IoU")

    def as_dict(self) -> dict[str, Any]:
        return {"aggregation": self.aggregation, "resolution": self.resolution, "threshold": self.threshold,
                "classes": self.classes, "why": self.why}

    def metric_key(self, metric: str) -> str:
        """The metrics.json key a table metric reads under this convention."""
        if self.aggregation == "per-image" and metric in PER_IMAGE_FORMS:
            return PER_IMAGE_FORMS[metric]
        return METRICS[metric][0]


@dataclass(frozen=True)
class Protocol:
    checkpoint: str = "best-val-dice"
    scored_on: str = "test"
    why: str = ""

    def describe(self) -> str:
        chosen = {"best-val-dice": "the best-validation-Dice checkpoint", "final-epoch": "the final-epoch network",
                  "lowest-val-loss": "the lowest-validation-loss checkpoint"}[self.checkpoint]
        return f"{chosen}, scored on the {self.scored_on} subset"

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "scored_on": self.scored_on, "why": self.why}


def _mapping(path: Path, key: str, data: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise spec_error(path, key, f"expected a mapping with keys {', '.join(sorted(allowed))}, got {data!r}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise spec_error(path, f"{key}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    return data


def check_choice(path: Path, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise spec_error(path, key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def load_scoring(path: Path, data: Any, metrics: list[str]) -> Scoring:
    """The `scoring:` block, checked against the table's metrics; errors name the file and key."""
    data = _mapping(path, "scoring", data, SCORING_KEYS)
    for key in ("aggregation", "resolution", "threshold", "classes"):
        if key not in data:
            raise spec_error(path, f"scoring.{key}", "missing (required): say how the paper scores, or what we chose")
    threshold = data["threshold"]
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold < 1:
        raise spec_error(path, "scoring.threshold", f"expected a probability in [0, 1), got {threshold!r}")
    scoring = Scoring(aggregation=check_choice(path, "scoring.aggregation", data["aggregation"], AGGREGATIONS),
                      resolution=check_choice(path, "scoring.resolution", data["resolution"], RESOLUTIONS),
                      threshold=float(threshold), classes=check_choice(path, "scoring.classes", data["classes"], CLASSES),
                      why=str(data.get("why") or ""))
    if scoring.aggregation == "per-image":
        pooled = [m for m in metrics if m in POOLED_ONLY]
        if pooled:
            raise spec_error(path, "scoring.aggregation", f"per-image, but metric {pooled[0]!r} is pooled only")
    if scoring.classes == "two-class-mean" and "mean_iou" not in metrics:
        raise spec_error(path, "scoring.classes", "two-class-mean: list the `mean_iou` metric (the paper's IoU)")
    return scoring


def load_protocol(path: Path, data: Any) -> Protocol:
    data = _mapping(path, "protocol", data or {}, PROTOCOL_KEYS)
    return Protocol(checkpoint=check_choice(path, "protocol.checkpoint", data.get("checkpoint", "best-val-dice"), CHECKPOINTS),
                    scored_on=check_choice(path, "protocol.scored_on", data.get("scored_on", "test"), SCORED_ON),
                    why=str(data.get("why") or ""))


def with_options(spec: Any, metrics: str | None = None, resolution: str | None = None) -> Any:
    """The table spec (`tables.TableSpec`) with extra printed metrics (`reproduce --metrics`) and another
    scoring resolution (`--score-resolution`); an unknown metric or resolution is a SpecError naming the option."""
    extra = [m.strip() for m in (metrics or "").split(",") if m.strip()]
    unknown = [m for m in extra if m not in METRICS]
    if unknown:
        raise SpecError(f"--metrics: unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    spec.metrics = list(dict.fromkeys(spec.metrics + extra))
    if resolution is not None:
        if spec.scoring is None:
            raise SpecError(f"--score-resolution: {spec.id} scores no masks ({spec.kind} table)")
        spec.scoring = dataclasses.replace(spec.scoring, resolution=resolution)
    if spec.scoring is not None:
        spec.scoring = load_scoring(spec.path, {**spec.scoring.as_dict()}, spec.metrics)  # re-check the pairing
    return spec

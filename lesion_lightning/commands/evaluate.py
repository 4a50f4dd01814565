"""`lesion-lightning evaluate --pred DIR --gt DIR`: score predicted masks against ground truth.

The method (file matching by image id, soft predictions, the ISIC scorer's conventions) is
`lesion_lightning.evaluation.folders`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted masks")
    parser.add_argument("--gt", required=True, type=Path, help="folder of ground-truth masks")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON (fractions in [0, 1])")
    parser.add_argument("--threshold", type=int, default=128,
                        help="grey level above which a soft (probability-map) prediction is lesion (default 128)")
    parser.add_argument("--missing", choices=("error", "zero"), default="error",
                        help="ground truth without a prediction: fail (default) or score it as an empty prediction")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write per-image scores to this CSV file")


def _print_table(values: dict[str, float], num_images: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from lesion_lightning.evaluation.folders import JSON_POOLED

    table = Table(title=f"Segmentation scores ({num_images} images)")
    table.add_column("metric")
    table.add_column("pooled", justify="right")
    table.add_column("per-image mean", justify="right")
    for name in (*JSON_POOLED, "precision"):
        table.add_row(name, f"{values[name]:.4f}", f"{values[name + '_per_image']:.4f}")
    table.add_row("mean_iou (2-class)", f"{values['mean_iou']:.4f}", "")
    table.add_row("thresholded_jaccard", "", f"{values['thresholded_jaccard']:.4f}")
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.data.errors import DataError
    from lesion_lightning.evaluation.folders import evaluate_folders, summary, write_per_image_csv

    try:
        metric, rows = evaluate_folders(args.pred, args.gt, threshold=args.threshold, missing=args.missing)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not any(r["pred_file"] for r in rows):
        print(f"warning: no prediction in --pred {args.pred} matches a ground-truth id of --gt {args.gt}: every "
              "image was scored as an empty prediction (check the folders and their file names)", file=sys.stderr)
    values = {k: float(v) for k, v in metric.compute().items()}
    if args.csv is not None:
        write_per_image_csv(args.csv, rows)
    if args.json:
        print(json.dumps(summary(values, len(rows))))
    else:
        _print_table(values, len(rows))
    return 0

"""`lesion-lightning predict --ckpt RUN_OR_CKPT --input FILE_OR_DIR --output DIR`: masks for your own images.

What is written (masks, overlays, `predictions.csv`) is described in `lesion_lightning.inference.images`.
The exit code is non-zero only when no image at all could be predicted (or the options/checkpoint are
unusable). `--input` takes files and/or folders (a folder's image files; `--recursive` also searches
subfolders, then leaving out files named like masks). `--gt` is a folder searched recursively for masks
named `<id>.*`, `<id>_segmentation.*`, `<id>_lesion.*` or `<id>_mask.*`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_lightning.commands._options import add_checkpoint_options, input_files


def configure(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    parser.add_argument("--input", required=True, nargs="+", type=Path, metavar="FILE_OR_DIR",
                        help="image files and/or folders of images")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--backend", choices=("auto", "eager", "onnx"), default="auto",
                        help="run the network eagerly in PyTorch or through ONNX Runtime (exported once per "
                        "checkpoint and size, verified, cached); auto: ONNX Runtime on CPU where the export "
                        "verifies, else eager (default auto)")
    parser.add_argument("--tta", action="store_true", help="6-fold test-time augmentation (flips, 90-degree rotations)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="probability threshold of the binary mask (default: the model's, usually 0.5)")
    parser.add_argument("--gt", type=Path, default=None, metavar="DIR",
                        help="folder of ground-truth masks: red contour in the overlays, Dice/IoU in the CSV")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--recursive", action="store_true", help="search input folders recursively")
    parser.add_argument("--no-overlay", action="store_true", help="write masks and the CSV only")
    parser.add_argument("--workers", type=int, default=2, help="decode/write threads (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files of an earlier run in --output (default: refuse to overwrite any file)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _option_error(args: argparse.Namespace) -> str | None:
    if args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        return f"--threshold must be in (0, 1), got {args.threshold}"
    if args.gt is not None and not args.gt.is_dir():
        return f"--gt {args.gt}: folder not found"
    return None


def _print_report(report, args: argparse.Namespace) -> None:
    for problem in report.gt_problems:
        print(f"warning: ground truth: {problem}", file=sys.stderr)
    for file, problem in report.skipped:
        print(f"skipped: {problem if file in problem else f'{file}: {problem}'}", file=sys.stderr)
    n = len(report.rows)
    rate = n / report.seconds if report.seconds > 0 else float("inf")
    print(f"predicted {n} image(s), skipped {len(report.skipped)} bad file(s) in {report.seconds:.1f} s "
          f"({rate:.1f} img/s) -> {args.output} (masks, overlays, predictions.csv"
          f"{', skipped.csv' if report.skipped else ''})")
    scored = [r for r in report.rows if "dice" in r]
    if scored:
        print(f"mean Dice {sum(r['dice'] for r in scored) / len(scored):.4f}, "
              f"mean IoU {sum(r['iou'] for r in scored) / len(scored):.4f} over {len(scored)} image(s) with ground truth")


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.data.errors import DataError
    from lesion_lightning.inference import CheckpointError
    from lesion_lightning.inference.images import OutputError, predict_files
    from lesion_lightning.inference.predictor import open_predictor

    problem = _option_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    files = input_files(args.input, args.recursive, "input images to predict")
    if files is None:
        return 1
    try:
        predictor = open_predictor(args.ckpt, device=args.device, trust_checkpoint=args.trust_checkpoint,
                                   tta=args.tta, threshold=args.threshold, backend=args.backend)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{predictor.describe()}; {len(files)} image(s)")
    try:
        report = predict_files(predictor, files, args.output, batch_size=args.batch_size, gt_dir=args.gt,
                               overlay=not args.no_overlay, workers=args.workers, progress=not args.no_progress,
                               overwrite=args.overwrite)
    except (DataError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_report(report, args)
    return 0 if report.rows else 1

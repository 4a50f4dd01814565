"""`lesion-lightning export --ckpt RUN_OR_CKPT --format onnx|torchscript|safetensors --output FILE`.

Every export is verified against the PyTorch model before the command reports success, and writes a
JSON model card beside the file; see `lesion_lightning.inference.export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_lightning.inference.export import DEFAULT_OPSET, DEFAULT_OUTPUT_ROOT, FORMATS, TOLERANCE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, metavar="RUN_OR_CKPT", help="run folder, .ckpt file or published weights")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help=f"output file; the model card goes beside it as <stem>.json (default "
                        f"{DEFAULT_OUTPUT_ROOT}/<run name>.onnx|.pt|.safetensors)")
    parser.add_argument("--size", default=None, metavar="N|HxW",
                        help="input size of the export/verification (default: the run's working size)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"max abs difference allowed against PyTorch (default {TOLERANCE:g})")
    parser.add_argument("--note", default=None, metavar="TEXT",
                        help="a sentence for the model card (e.g. what data and resolution the model was trained on)")
    parser.add_argument("--training-root", default=None, metavar="PATH",
                        help="record the training data at PATH in the card instead of the run's data.root (e.g. a "
                        "path relative to the repository, for weights published to others)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (can execute code: trusted files only)")


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.inference import CheckpointError, load_task
    from lesion_lightning.inference.export import ExportError, default_output, export_loaded, parse_size

    try:
        size = parse_size(args.size)
        loaded = load_task(args.ckpt, trust_checkpoint=args.trust_checkpoint)
        output = args.output or default_output(loaded, args.format)
        card, card_path = export_loaded(loaded, args.format, output, size, opset=args.opset, tolerance=args.tolerance,
                                         note=args.note, training_root=args.training_root)
    except (CheckpointError, ExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = card["export"]
    diffs = ", ".join(f"{k}: {v:.2e}" for k, v in info["max_abs_diff"].items())
    for note in info.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    spatial = info.get("spatial")
    print(f"exported {loaded.model_name} ({card['params']:,} params, {card['gmacs']} GMACs at "
          f"{card['input']['export_size'][0]}x{card['input']['export_size'][1]}) to {output} [{args.format}"
          f"{', ' + spatial + ' spatial size' if spatial else ''}]")
    print(f"verified against PyTorch: max abs diff {diffs} (tolerance {args.tolerance:g})")
    print(f"model card: {card_path}")
    return 0


"""`lesion-lightning explain --ckpt RUN_OR_CKPT --input FILE_OR_DIR --output DIR`: what the model looked at.

The maps (Grad-CAM of the predicted lesion, activations) and how layers are picked are described in
`lesion_lightning.inference.explain`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_lightning.commands._options import add_checkpoint_options, input_files


def configure(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    parser.add_argument("--input", nargs="+", type=Path, metavar="FILE_OR_DIR", help="image files and/or folders")
    parser.add_argument("--output", type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--layers", default="shallow,intermediate,deep",
                        help="comma-separated levels (shallow, intermediate, deep) and/or module names "
                             "(see --list-layers); default shallow,intermediate,deep")
    parser.add_argument("--list-layers", action="store_true", help="print the candidate layers and exit")
    parser.add_argument("--recursive", action="store_true", help="search input folders recursively")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the image under the heatmap (default 0.5)")


def _list_layers(predictor) -> None:
    from lesion_lightning.inference.explain import default_layers, probe_layers

    size = predictor.preprocessing.image_size
    probed = probe_layers(predictor.task.model, size)
    picks = {layer.name: level for level, layer in default_layers(probed).items()}
    print(f"{predictor.loaded.model_name}: layers with (N, C, h, w) outputs at {size[0]}x{size[1]}, in forward order")
    print(f"{'order':>5}  {'name':<48} {'type':<20} {'C':>5} {'h x w':>9}  default")
    for layer in probed:
        print(f"{layer.order:>5}  {layer.name:<48} {layer.kind:<20} {layer.channels:>5} "
              f"{f'{layer.height}x{layer.width}':>9}  {picks.get(layer.name, '')}")


def _usage_error(args: argparse.Namespace) -> str | None:
    if not args.input or args.output is None:
        return "--input and --output are required (unless --list-layers)"
    if not 0.0 <= args.alpha <= 1.0:
        return f"--alpha must be in [0, 1], got {args.alpha}"
    return None


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.inference import CheckpointError
    from lesion_lightning.inference.explain import activation_layers_of, explain_files, resolve_layers
    from lesion_lightning.inference.predictor import open_predictor

    try:
        predictor = open_predictor(args.ckpt, device=args.device, trust_checkpoint=args.trust_checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list_layers:
        _list_layers(predictor)
        return 0
    problem = _usage_error(args)
    try:
        layers = None if problem else resolve_layers(predictor.task.model, args.layers, predictor.preprocessing.image_size)
    except ValueError as exc:
        problem = str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    files = input_files(args.input, args.recursive)
    if files is None:
        return 1
    for label, layer in layers + activation_layers_of(predictor):
        print(f"{label}: {layer.name} ({layer.kind}, {layer.channels} channels at {layer.height}x{layer.width})")
    done, failures = explain_files(predictor, files, args.output, layers, args.alpha)
    for failure in failures:
        print(f"skipped: {failure}", file=sys.stderr)
    print(f"explained {done} image(s), skipped {len(failures)} bad file(s) -> {args.output}")
    return 0 if done else 1

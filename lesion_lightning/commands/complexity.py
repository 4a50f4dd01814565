"""`lesion-lightning complexity MODEL [--size N | --size H W]`: parameters, MACs, FLOPs and memory of one model.

FLOPs of one forward pass of a single image (torch FlopCounterMode on CPU; one MAC = 2 FLOPs);
memory = float32 parameters x 4 bytes / 1024^2 (LANET eq. 4). `--arg KEY=VALUE` passes constructor
arguments (values parsed as JSON when they can be, e.g. `--arg spatial_conv=true`).
Exit status 0, 2 for bad options or a model that cannot be built with them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


class _SizeAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if len(values) not in (1, 2):
            parser.error(f"argument {option_string}: give one size N (square) or two sizes H W, got {len(values)}")
        if any(v < 1 for v in values):
            parser.error(f"argument {option_string}: sizes must be positive, got {' '.join(map(str, values))}")
        setattr(namespace, self.dest, tuple(values) * (2 if len(values) == 1 else 1))


def _parse_arg(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name (see `lesion-lightning models`)")
    parser.add_argument("--size", nargs="+", type=int, action=_SizeAction, default=None, metavar="N",
                        help="input size: N for N x N, or H W (default: the model's paper input size)")
    parser.add_argument("--channels", type=int, default=None,
                        help="input channels (default: the model's paper input channels)")
    parser.add_argument("--arg", dest="model_args", type=_parse_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="constructor argument for the model (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.models import create_model, get_model_spec
    from lesion_lightning.utils.complexity import measure_complexity

    try:
        spec = get_model_spec(args.model)
    except KeyError as err:
        print(f"error: MODEL: {err.args[0]}", file=sys.stderr)
        return 2
    channels = args.channels if args.channels is not None else spec.input_size[0]
    if channels < 1:
        print(f"error: --channels must be positive, got {channels}", file=sys.stderr)
        return 2
    height, width = args.size if args.size is not None else spec.input_size[1:]
    kwargs = dict(args.model_args)
    if args.channels is not None:
        kwargs.setdefault("in_channels", channels)
    try:
        model = create_model(args.model, **kwargs)
    except (TypeError, ValueError) as err:
        print(f"error: --arg: {err}", file=sys.stderr)
        return 2
    input_size = (channels, height, width)
    try:
        c = measure_complexity(model, input_size)
    except RuntimeError as err:
        print(f"error: --size {height} {width}: {args.model} cannot run at this size: {err}", file=sys.stderr)
        return 2
    result = {"name": args.model, **c.as_dict(), "model_args": kwargs, "paper": spec.paper}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.model} at {channels}x{height}x{width} (batch 1; MAC = 2 FLOPs)", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("parameters", f"{c.params:,}")
    table.add_row("trainable parameters", f"{c.trainable_params:,}")
    table.add_row("MACs", f"{c.macs:,} ({c.macs / 1e9:.3f} G)")
    table.add_row("FLOPs", f"{c.flops:,} ({c.flops / 1e9:.3f} G)")
    table.add_row("memory (float32 params)", f"{c.memory_mb:.2f} MB")
    for key, label in (("params", "parameters"), ("gmacs", "GMACs"), ("gflops", "GFLOPs")):
        for source, prefix in (("", "paper"), ("official_code_", "authors' code")):
            if isinstance(spec.paper.get(source + key), (int, float)):
                table.add_row(f"{prefix} {label}", f"{spec.paper[source + key]:,}")
    Console(file=sys.stdout).print(table)
    return 0

"""`lesion-lightning bench`: inference latency, FPS, parameters and MACs per model and input size, beside
SLSNet Table 5 and LANET Table 4. The method and outputs are described in `lesion_lightning.evaluation.bench`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lesion_lightning.evaluation.bench import DEFAULT_MODELS, DEFAULT_OUTPUT, DEFAULT_SIZES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=DEFAULT_MODELS, metavar="A,B,...",
                        help=f"comma-separated registered model names (default {DEFAULT_MODELS}; "
                        "see `lesion-lightning models`)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, metavar="S,...",
                        help=f"comma-separated square input sizes in pixels (default {DEFAULT_SIZES})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1, as the papers)")
    parser.add_argument("--backend", default="eager",
                        help="eager (default), compile (torch.compile; compiling takes a while on CPU) or "
                        "onnxruntime (export to a temporary .onnx, run with ONNX Runtime)")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes; the median is reported (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed forward passes first (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's default for this machine)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"folder for bench.json/.csv/.md (default {DEFAULT_OUTPUT})")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of the table")


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.evaluation.bench import check_settings, parse_models, parse_sizes, run_bench
    from lesion_lightning.evaluation.bench_report import print_table, write_outputs
    from lesion_lightning.utils.complexity import LatencySettings

    settings = LatencySettings(batch=args.batch, device=args.device, backend=args.backend, repeats=args.repeats,
                               warmup=args.warmup)
    try:
        models, sizes = parse_models(args.models), parse_sizes(args.sizes)
        check_settings(settings, args.threads)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    doc = run_bench(models, sizes, settings, args.threads)
    paths = write_outputs(args.output, doc)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print_table(doc)
        print(f"wrote {paths['md']}, {paths['csv']}, {paths['json']}")
    for r in doc["rows"]:
        if "error" in r:
            print(f"error: model {r['model']} at {r['size']} px: {r['error']}", file=sys.stderr)
    return 1 if any("error" in r for r in doc["rows"]) else 0

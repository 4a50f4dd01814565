"""`lesion-lightning check-data`: validate a dataset folder and summarise it.

Exit status 0 when the dataset is clean, 1 when any problem was found (each printed on its own line
naming the file), 2 for bad options. `--json` prints the report as JSON instead of the table.
"""

from __future__ import annotations

import argparse
import json
import sys

from lesion_lightning.commands._options import add_reader_options, reader_options
from lesion_lightning.data.readers import DATASETS, SUBSETS

MAX_WARNING_LINES = 20


def configure(parser: argparse.ArgumentParser) -> None:
    add_reader_options(parser)
    parser.add_argument("--subsets", nargs="+", choices=SUBSETS, default=None,
                        help="official subsets to check (ISIC only; default: all present)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--against", metavar="OTHER_ROOT", default=None,
                        help="report images shared with another dataset (same id or identical file)")
    parser.add_argument("--against-dataset", choices=DATASETS, default=None,
                        help="layout of --against (default: detected from its folder names)")
    parser.add_argument("--decode-images", action="store_true",
                        help="fully decode every image (default: header and end-of-file check, "
                        "full decode when in doubt)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: up to 8)")


def _fmt_range(values) -> str:
    return "-" if values is None else (f"{values[0]}" if values[0] == values[1] else f"{values[0]}-{values[1]}")


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    status = "[green]clean" if report.ok else f"[red]{len(report.problems)} problem(s)"
    table = Table(title=f"check-data: {report.dataset} at {report.root}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("status", status)
    table.add_row("images", str(report.num_images))
    table.add_row("image/mask pairs", str(report.num_pairs))
    if report.subsets:
        table.add_row("subsets", ", ".join(f"{k}: {v}" for k, v in report.subsets.items()))
    table.add_row("image height (px)", _fmt_range(report.image_height))
    table.add_row("image width (px)", _fmt_range(report.image_width))
    cov = report.mask_coverage
    table.add_row("mask coverage", "-" if cov is None else f"{cov[0]:.1%} - {cov[1]:.1%} (mean {cov[2]:.1%})")
    table.add_row("warnings", str(len(report.warnings)))
    if report.overlap is not None:
        o = report.overlap
        table.add_row(f"shared with {o['dataset']}", f"{o['num_shared']} ({len(o['shared_ids'])} by id, "
                      f"{len(o['same_content'])} identical files, {len(o['near_duplicates'])} near-duplicates)")
    console.print(table)


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.data.checks import check_dataset
    from lesion_lightning.data.errors import DataError

    try:
        report = check_dataset(
            args.dataset, args.root, subsets=args.subsets, against=args.against,
            against_dataset=args.against_dataset, decode_images=args.decode_images, workers=args.workers,
            **reader_options(args),
        )
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    _print_table(report)
    # Plain prints: rich would wrap long paths.
    for w in report.warnings[:MAX_WARNING_LINES]:
        print(f"WARNING {w.file}: {w.problem}")
    if len(report.warnings) > MAX_WARNING_LINES:
        print(f"... and {len(report.warnings) - MAX_WARNING_LINES} more warnings (see --json)")
    for p in report.problems:
        print(f"PROBLEM {p.file}: {p.problem}")
    if report.overlap is not None and report.overlap["shared_ids"]:
        ids = report.overlap["shared_ids"]
        print(f"shared ids ({len(ids)}): {' '.join(ids[:50])}" + (" ..." if len(ids) > 50 else ""))
    return 0 if report.ok else 1

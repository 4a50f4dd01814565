"""`lesion-lightning demo`: the main job on the embedded default data, end to end.

Trains the demo experiment (experiments/demo.yaml) on the real HAM10000 sample from ../shared/data
(a synthetic ISIC-2018-layout set when the sample is absent), tests the best checkpoint, and prints
where the run folder is and what it scored.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

from lesion_lightning.paths import REPO_ROOT, sample_dataset_root

DEMO_CONFIG = REPO_ROOT / "experiments" / "demo.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's number of epochs")
    parser.add_argument("--output-root", default="runs", help="root of the run folders (default: runs)")
    parser.add_argument("--logger", default="wandb", choices=("wandb", "csv", "none"),
                        help="experiment logger (W&B runs offline; sync later with `wandb sync`)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lesion_lightning.inference import resolve_checkpoint
    from lesion_lightning.training.cli import build_cli

    console = Console()
    dataset, root = "ham10000", sample_dataset_root("ham10000")
    if root is None:
        dataset = "isic2018"
        console.print("[yellow]Real HAM10000 sample not found beside the checkout: using the synthetic ISIC 2018 generator.")
    else:
        console.print(f"Embedded default data: real HAM10000 sample at {root}")
    run_name = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    common = ["--config", str(DEMO_CONFIG), f"--data.dataset={dataset}", f"--output_root={args.output_root}",
              f"--run_name={run_name}", f"--logger={args.logger}"]
    if args.epochs is not None:
        common.append(f"--trainer.max_epochs={args.epochs}")
    build_cli(["fit", *common])
    run_dir = Path(args.output_root) / "demo" / run_name
    ckpt, _ = resolve_checkpoint(run_dir)
    build_cli(["test", *common, f"--ckpt_path={ckpt}"])

    metrics = json.loads((run_dir / "metrics.json").read_text())
    table = Table(title=f"demo: simple_unet on {dataset} (embedded data) — {ckpt.name}")
    table.add_column("metric")
    for stage in ("val", "test"):
        table.add_column(stage, justify="right")
    for key in ("dice", "iou", "sensitivity", "specificity", "accuracy", "dice_per_image", "thresholded_jaccard"):
        table.add_row(key, *(f"{metrics.get(s, {}).get(key, float('nan')):.4f}" for s in ("val", "test")))
    console.print(table)
    console.print(f"Run folder: {run_dir.resolve()}")
    return 0

"""Start-up time of each `lesion-lightning` command, and which heavy libraries it imports.

Each command runs as a fresh process on a tiny synthetic ISIC 2018 set (6 pairs) and a freshly
initialised `simple_unet` checkpoint (so the time is start-up, not work): the wall time is the median of
`--repeats` runs; one extra run under `python -X importtime` lists whether Lightning, W&B,
albumentations, torchmetrics and onnxruntime were imported. Commands that do not train should import
neither Lightning nor W&B.

    .venv/bin/python benchmarks/startup.py [--repeats 3] [--commands help,models]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# top-level modules reported per command (the costly ones; `import pytorch_lightning` alone is ~7-10 s here)
WATCHED = ("pytorch_lightning", "lightning", "wandb", "albumentations", "torchmetrics", "onnxruntime", "torch")
REPO = Path(__file__).resolve().parents[1]


def _prepare(tmp: Path) -> dict[str, Path]:
    """A 6-pair synthetic dataset, a prediction folder (= its masks) and a tiny checkpoint."""
    import torch

    from lesion_lightning.data.synthetic import write_dataset
    from lesion_lightning.training.task import SegmentationTask

    root = write_dataset(tmp / "isic2018", "isic2018", 6, seed=0, image_size=(96, 128))
    gt = next(root.glob("*GroundTruth"))
    images = next(p for p in root.glob("*Input") if p.is_dir())
    torch.manual_seed(0)
    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 8})
    ckpt = tmp / "model.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "datamodule_hyper_parameters": {"image_size": 64, "augment": "none"}}, ckpt)
    return {"root": root, "gt": gt, "image": sorted(images.glob("*.jpg"))[0], "ckpt": ckpt}


def _commands(paths: dict[str, Path], tmp: Path) -> dict[str, list[str]]:
    return {
        "help": ["--help"],
        "check-data": ["check-data", "--dataset", "isic2018", "--root", str(paths["root"])],
        "split": ["split", "--dataset", "isic2018", "--root", str(paths["root"]), "--scheme", "80-10-10",
                  "--out", str(tmp / "split.json")],
        "evaluate": ["evaluate", "--pred", str(paths["gt"]), "--gt", str(paths["gt"])],
        "models": ["models"],
        "predict": ["predict", "--ckpt", str(paths["ckpt"]), "--input", str(paths["image"]), "--output",
                    str(tmp / "pred"), "--no-progress", "--device", "cpu", "--overwrite"],
        "fit --print_config": ["fit", "--config", str(REPO / "experiments" / "demo.yaml"), "--print_config"],
    }


def _run(args: list[str], env: dict[str, str], importtime: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "lesion_lightning", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    return time.perf_counter() - start, proc


def _imported(stderr: str) -> list[str]:
    """The watched top-level packages that appear in a `-X importtime` log."""
    seen = set()
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name in WATCHED:
                seen.add(name)
    return [m for m in WATCHED if m in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--commands", default=None, help="comma-separated subset of the command names")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="startup_bench_"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "WANDB_MODE": "offline", "COLUMNS": "160"}
    try:
        commands = _commands(_prepare(tmp), tmp)
        wanted = args.commands.split(",") if args.commands else list(commands)
        unknown = [c for c in wanted if c not in commands]
        if unknown:
            raise SystemExit(f"error: --commands: unknown {', '.join(unknown)}; known: {', '.join(commands)}")
        print(f"start-up time per command (fresh process, median of {args.repeats}; tiny inputs)")
        print(f"{'command':<22}{'seconds':>9}  {'exit':>4}  imports")
        for name in wanted:
            _, traced = _run(commands[name], env, importtime=True)  # also warms the OS file cache
            times = []
            for _ in range(args.repeats):
                elapsed, proc = _run(commands[name], env)
                times.append(elapsed)
            heavy = _imported(traced.stderr)
            flag = "  <- imports Lightning/W&B" if {"pytorch_lightning", "lightning", "wandb"} & set(heavy) \
                and name != "fit --print_config" else ""
            print(f"{name:<22}{statistics.median(times):>9.2f}  {proc.returncode:>4}  {', '.join(heavy) or '-'}{flag}",
                  flush=True)
            if proc.returncode != 0:
                print(f"  stderr: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

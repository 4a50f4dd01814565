"""The run folder: everything needed to understand and repeat a run, written by rank 0.

runs/<experiment>/<run_name>/
    config.yaml          resolved LightningCLI config (RunConfigCallback)
    split.json           the split manifest the DataModule used
    environment.json     git commit, package versions, command line
    complexity.json      params / MACs / FLOPs (ComplexityCallback)
    metrics.json         final val/test metrics
    per_image_test.csv   per-image test metrics
    checkpoints/         best-by-val/dice and last.ckpt
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from lesion_lightning.paths import REPO_ROOT
from lesion_lightning.training.task import LesionSegmentationModule

TRACKED_PACKAGES = (
    "lesion-lightning", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "timm",
    "segmentation-models-pytorch", "albumentations", "wandb", "numpy", "opencv-python-headless",
)


def git_commit(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit hash and dirty flag of the source tree, or an explanation when it is not a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": f"{repo} is not a git checkout"}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment_info() -> dict[str, Any]:
    return {
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": sys.argv,
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)  # atomic: an interrupted run never leaves a half-written metrics file


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


class RunFolderCallback(pl.Callback):
    """Writes the split manifest, environment and final metrics into the run folder (rank 0 only)."""

    def __init__(self) -> None:
        super().__init__()

    @staticmethod
    def run_dir(trainer: pl.Trainer) -> Path:
        return Path(trainer.default_root_dir)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        run_dir = self.run_dir(trainer)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "environment.json", environment_info())
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "manifest", None) is not None:
            datamodule.save_manifest(run_dir / "split.json")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.config.update({"split": datamodule.manifest.to_dict()}, allow_val_change=True)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        result = pl_module.epoch_results.get(stage) if isinstance(pl_module, LesionSegmentationModule) else None
        if result is None:
            return
        path = self.run_dir(trainer) / "metrics.json"
        metrics = read_json(path)
        metrics[stage] = {**result.metrics, "epoch": trainer.current_epoch, "global_step": trainer.global_step}
        write_json(path, metrics)
        if stage == "test":
            rows = result.per_image
            if rows:
                with open(self.run_dir(trainer) / "per_image_test.csv", "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module, "test")


class RunConfigCallback(SaveConfigCallback):
    """Saves the resolved config into the run folder and the W&B run config."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, run_dir / self.config_filename, skip_none=False, overwrite=True,
                             multifile=self.multifile)
            resolved = self.parser.dump(self.config, skip_none=False, format="json")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.config.update({"cli": json.loads(resolved)}, allow_val_change=True)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

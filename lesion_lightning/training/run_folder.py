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
import fcntl
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn

from lesion_lightning.paths import REPO_ROOT, sample_dataset_root
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


def data_source(datamodule: Any) -> dict[str, Any]:
    """Which data a run used: the full dataset at `data.root`, the embedded real sample, or the synthetic
    stand-in (both only when `data.root` is null)."""
    root = datamodule.resolve_root()
    if datamodule.root is not None:
        kind = "dataset"
    elif root == sample_dataset_root(datamodule.dataset):
        kind = "real sample"
    else:
        kind = "synthetic"
    return {"kind": kind, "dataset": datamodule.dataset, "root": str(root)}


def announce_default_data(dataset: str) -> None:
    """Say loudly that `data.root: null` means the small embedded sample or synthetic data, not the dataset."""
    sample = sample_dataset_root(dataset)
    what = (f"the small embedded real sample of {dataset} ({sample})" if sample is not None
            else f"SYNTHETIC stand-in images for {dataset} (no real sample found)")
    print(f"NOTE: data.root is null: this run uses {what}, not the full dataset; its metrics are not comparable "
          "to a paper's. Set --data.root=/path/to/the/dataset for real results.", file=sys.stderr)


def run_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file belongs to (`<run>/checkpoints/x.ckpt` beside `<run>/config.yaml`)."""
    run = checkpoint.resolve().parent.parent
    if checkpoint.resolve().parent.name == "checkpoints" and (run / "config.yaml").is_file():
        return run
    return None


# Options that change speed or where files go, not what a resumed run computes.
RESUMABLE_OPTIONS = {"data.num_workers", "data.cache", "data.pin_memory", "data.root", "model.init_args.tta"}


def _flatten(config: Any, prefix: str) -> dict[str, Any]:
    """{"data.image_size": 64, "model.init_args.lr": 0.01, ...} from nested dicts."""
    if not isinstance(config, dict) or not config:
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        out.update(_flatten(value, f"{prefix}.{key}"))
    return out


def changed_options(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`--data.x (old -> new)` for every data or model option that differs between two resolved configs."""
    old = {**_flatten(saved.get("data"), "data"), **_flatten(saved.get("model"), "model")}
    new = {**_flatten(current.get("data"), "data"), **_flatten(current.get("model"), "model")}
    keys = sorted((set(old) | set(new)) - RESUMABLE_OPTIONS)
    return [f"--{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in keys if old.get(k) != new.get(k)]


def check_writable(run_dir: Path, model: Any = None) -> None:
    """Before any training: the run folder can be written and its disk holds two checkpoints (best, last)
    of `model` with an optimiser state of twice its size; a clear error otherwise."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise SystemExit(f"error: cannot write the run folder {run_dir}: {exc.strerror or exc}; "
                         "choose a writable --output_root") from None
    params = sum(p.numel() * p.element_size() for p in model.parameters()) if model is not None else 0
    needed = 2 * 3 * params + (16 << 20)
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise SystemExit(f"error: {run_dir}: {free / 2**20:.0f} MB free, but the checkpoints need about "
                         f"{needed / 2**20:.0f} MB; free some space or choose another --output_root")


RUN_LOCK = ".lock"
_held_run_locks: dict[Path, int] = {}  # run folder -> open lock file of this process


def hold_run_lock(run_dir: Path) -> None:
    """Claim the run folder for this process (an exclusive `flock` on `.lock`, dropped when the process ends or
    `release_run_locks()` runs): a second process training or evaluating into the same folder at the same time
    is refused instead of overwriting its checkpoints and metrics."""
    key = run_dir.resolve()
    if key in _held_run_locks:
        return
    fd = os.open(key / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SystemExit(f"error: the run folder {run_dir} is in use by another process ({holder}); give this run "
                         "another --run_name (or --output_root), or wait until the other one ends") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{platform.node()}:{os.getpid()}\n".encode(), 0)
    _held_run_locks[key] = fd


def release_run_locks() -> None:
    while _held_run_locks:
        os.close(_held_run_locks.popitem()[1])


MAIN_FILES = ("config.yaml", "config_validate.yaml", "config_test.yaml", "config_predict.yaml", "split.json",
              "metrics.json", "per_image_test.csv", "complexity.json", "curves.png", "ensemble.json")


def print_run_folder(run_dir: Path, stage: str | None) -> None:
    """Where a stage's results went: the run folder and its main files (as `demo` prints them)."""
    files = [name for name in MAIN_FILES if (run_dir / name).is_file()]
    files += [f"checkpoints/{p.name}" for p in sorted((run_dir / "checkpoints").glob("*.ckpt"))]
    print(f"{stage or 'run'}: results in {run_dir.resolve()}")
    for name in files:
        print(f"  {name}")


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
            split_path = datamodule.save_manifest(run_dir / "split.json")
            write_json(split_path, {**read_json(split_path), "data_source": data_source(datamodule)})
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.config.update({"split": datamodule.manifest.to_dict()}, allow_val_change=True)

    def _entry(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> dict[str, Any] | None:
        result = pl_module.epoch_results.get(stage) if isinstance(pl_module, LesionSegmentationModule) else None
        if result is None or trainer.sanity_checking:
            return None
        return {**result.metrics, "epoch": trainer.current_epoch, "global_step": trainer.global_step}

    def _write(self, trainer: pl.Trainer, sections: dict[str, dict[str, Any] | None]) -> None:
        """Set (dict) or drop (None) sections of metrics.json, with the run's data source (rank 0)."""
        if not trainer.is_global_zero:
            return
        path = self.run_dir(trainer) / "metrics.json"
        metrics = read_json(path)
        for key, value in sections.items():
            if value is None:
                metrics.pop(key, None)
            else:
                metrics[key] = value
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "resolve_root"):
            metrics["data_source"] = data_source(datamodule)
        write_json(path, metrics)

    def _relative(self, trainer: pl.Trainer, checkpoint: str | None) -> str | None:
        if not checkpoint:
            return None
        path, run_dir = Path(checkpoint).resolve(), self.run_dir(trainer).resolve()
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """fit: `val` = the metrics of the epoch whose checkpoint selection picks (the checkpoint callback with
        a monitor, asked before it saves), `val_last_epoch` = the latest epoch's when that is another epoch.
        validate: `val` = the metrics of the checkpoint given."""
        entry = self._entry(trainer, pl_module, "val")
        if entry is None:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            self._write(trainer, {"val": {**entry, "checkpoint": self._relative(trainer, trainer.ckpt_path)}})
            return
        selector = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
        if selector is None:
            self._write(trainer, {"val": entry})
            return
        current = trainer.callback_metrics.get(selector.monitor)
        if selector.check_monitor_top_k(trainer, current):  # every rank: the decision is reduced across ranks
            self._write(trainer, {"val": {**entry, "selected_by": f"{selector.monitor} ({selector.mode})"},
                                  "val_last_epoch": None})
        else:
            self._write(trainer, {"val_last_epoch": entry})

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        entry = self._entry(trainer, pl_module, "test")
        if entry is None:
            return
        self._write(trainer, {"test": {**entry, "checkpoint": self._relative(trainer, trainer.ckpt_path)}})
        rows = pl_module.epoch_results["test"].per_image
        if rows and trainer.is_global_zero:
            with open(self.run_dir(trainer) / "per_image_test.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)


class RunConfigCallback(SaveConfigCallback):
    """Saves each stage's resolved config into the run folder (fit: `config.yaml`, the run's own; other
    stages: `config_<stage>.yaml`, so a test never overwrites the training config) and the W&B run config."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            stage = TrainerFn(stage).value  # Lightning passes the enum; its str() is "TrainerFn.TESTING"
            name = self.config_filename if stage == "fit" else f"config_{stage}.yaml"
            self.parser.save(self.config, run_dir / name, skip_none=False, overwrite=True, multifile=self.multifile)
            resolved = self.parser.dump(self.config, skip_none=False, format="json")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.config.update({"cli": json.loads(resolved)}, allow_val_change=True)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

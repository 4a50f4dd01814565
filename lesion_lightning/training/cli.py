"""LightningCLI front end: `lesion-lightning fit|validate|test|predict --config ...`.

On top of Lightning's own options it adds where the run folder goes (`--experiment`, `--run_name`,
`--output_root`), which logger to use (`--logger wandb|csv|none`, W&B offline unless configured
online), `--amp` (16-mixed on GPU, bf16-mixed on CPU) and `--tta` (6-fold test-time augmentation of
any model in validate/test/predict, overriding model.tta and checkpoint hyperparameters).

`experiments/base.yaml` is every subcommand's default config: its `trainer.callbacks` are the standard
callbacks (best checkpoint by val/dice, last.ckpt every epoch, run folder, complexity, prediction grid,
training curves, LR monitor, progress bar). A preset adds its recipe callbacks with `callbacks+:`; a
`callbacks:` list replaces the standard ones. A checkpoint callback without `dirpath` writes to
`<run folder>/checkpoints`.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.paths import REPO_ROOT
from lesion_lightning.training.run_folder import RunConfigCallback
from lesion_lightning.training.task import LesionSegmentationModule

LOGGERS = ("wandb", "csv", "none")
RUN_DIR_ENV = "LESION_LIGHTNING_RUN_DIR"
BASE_CONFIG = REPO_ROOT / "experiments" / "base.yaml"


def latest_run_with_checkpoint(experiment_dir: Path) -> Path | None:
    """Most recent run folder of an experiment that holds checkpoints/last.ckpt (for `--ckpt_path last`)."""
    runs = [p.parent.parent for p in experiment_dir.glob("*/checkpoints/last.ckpt")]
    return max(runs, key=lambda p: (p / "checkpoints" / "last.ckpt").stat().st_mtime) if runs else None


class LesionCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str | None, default=None,
                            help="experiment name: runs go to OUTPUT_ROOT/EXPERIMENT/RUN_NAME (default: the last --config file's name)")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder name (default: a timestamp; with --ckpt_path last: the latest run holding last.ckpt)")
        parser.add_argument("--output_root", type=str, default="runs", help="root folder of all run folders")
        parser.add_argument("--logger", type=str, default="wandb",
                            help=f"experiment logger, one of {', '.join(LOGGERS)} (W&B is offline unless WANDB_MODE=online)")
        parser.add_argument("--wandb_project", type=str, default="lesion-lightning", help="W&B project name")
        parser.add_argument("--amp", type=bool, default=False,
                            help="mixed precision: 16-mixed on GPU, bf16-mixed on CPU (overrides trainer.precision)")
        parser.set_defaults({"model": {"class_path": "lesion_lightning.training.task.SegmentationTask"}})
        parser.add_argument("--tta", type=bool | None, default=None,
                            help="6-fold test-time augmentation (identity, flips, rot90/270; probabilities averaged) "
                                 "for validate/test/predict and fit's validation epochs; overrides model.tta, also "
                                 "the value a --ckpt_path checkpoint carries (default: the model's own setting)")

    # -- model options that must win over checkpoint hyperparameters -----------------------------
    def after_instantiate_classes(self) -> None:
        opts = self._options()
        tta = opts.get("tta")
        if tta is not None:
            if not hasattr(self.model, "tta"):
                raise SystemExit(f"error: --tta: {type(self.model).__name__} has no test-time augmentation switch")
            self.model.tta = bool(tta)
        from lesion_lightning.training.ensemble import EnsembleTask

        if self.subcommand == "fit" and isinstance(self.model, EnsembleTask):
            raise SystemExit("error: model EnsembleTask evaluates trained members (validate/test/predict); "
                             "fit each member with its own preset, then test the ensemble")

    # -- run folder ------------------------------------------------------------------------------
    def _options(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _run_dir(self) -> Path:
        # DDP children re-run the command line: they must reuse the parent's folder, not a new timestamp.
        if int(os.environ.get("LOCAL_RANK", "0")) > 0 and os.environ.get(RUN_DIR_ENV):
            return Path(os.environ[RUN_DIR_ENV])
        run_dir = self._resolve_run_dir()
        os.environ[RUN_DIR_ENV] = str(run_dir)
        return run_dir

    def _resolve_run_dir(self) -> Path:
        opts = self._options()
        experiment = opts.get("experiment")
        if not experiment:
            configs = [str(c) for c in (opts.get("config") or []) if c]
            experiment = Path(configs[-1]).stem if configs else "default"
        experiment_dir = Path(opts.get("output_root") or "runs") / experiment
        run_name = opts.get("run_name")
        if not run_name and opts.get("ckpt_path") == "last":
            latest = latest_run_with_checkpoint(experiment_dir)
            if latest is None:
                raise SystemExit(f"error: --ckpt_path last, but no run of experiment {experiment!r} under {experiment_dir} "
                                 "has checkpoints/last.ckpt")
            return latest
        if not run_name:
            run_name = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return experiment_dir / run_name

    def _logger(self, run_dir: Path, name: str) -> Any:
        choice = (self._options().get("logger") or "wandb").lower()
        if choice not in LOGGERS:
            raise SystemExit(f"error: --logger must be one of {', '.join(LOGGERS)}, got {choice!r}")
        if choice == "none":
            return False
        if choice == "csv":
            return CSVLogger(save_dir=str(run_dir), name="csv", version="")
        # No account or network needed: offline unless the user asked for online mode.
        os.environ.setdefault("WANDB_MODE", "offline")
        return WandbLogger(project=self._options().get("wandb_project"), name=name, save_dir=str(run_dir))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer of the run folder: its root, logger, `--amp` precision, and the configured callbacks
        adapted to the run (checkpoints into the run folder; no LR monitor without a logger, no progress bar
        when `trainer.enable_progress_bar` is false)."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        run_dir = self._run_dir()
        kwargs["default_root_dir"] = str(run_dir)
        logger = trainer_config.get("logger")
        if logger in (None, True):
            logger = kwargs["logger"] = self._logger(run_dir, f"{run_dir.parent.name}/{run_dir.name}")
        if self._options().get("amp"):
            on_gpu = torch.cuda.is_available() and trainer_config.get("accelerator") != "cpu"
            kwargs["precision"] = "16-mixed" if on_gpu else "bf16-mixed"
        callbacks = []
        for callback in trainer_config.get("callbacks") or []:
            if isinstance(callback, LearningRateMonitor) and not logger:
                continue
            if isinstance(callback, ProgressBar) and trainer_config.get("enable_progress_bar") is False:
                continue
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(run_dir / "checkpoints")
            callbacks.append(callback)
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)


def finish_wandb_runs(trainer: Trainer | None) -> None:
    """Close the trainer's W&B runs so that everything logged is flushed to disk (offline run files are
    otherwise left mid-record until the process exits, and a later run in the same process would reuse them)."""
    for logger in getattr(trainer, "loggers", None) or []:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def build_cli(argv: list[str], run: bool = True) -> LesionCLI:
    """Parse `argv` (subcommand first unless `run=False`), build model, data and trainer, and run the subcommand."""
    defaults = {"default_config_files": [str(BASE_CONFIG)]}
    cli = LesionCLI(
        LesionSegmentationModule,
        LesionDataModule,
        subclass_mode_model=True,
        save_config_callback=RunConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=42,
        parser_kwargs={name: defaults for name in LesionCLI.subcommands()} if run else defaults,
        args=argv,
        run=run,
        auto_configure_optimizers=False,
    )
    if run:
        finish_wandb_runs(getattr(cli, "trainer", None))
    return cli

"""LightningCLI front end: `lesion-lightning fit|validate|test|predict --config ...`.

On top of Lightning's own options it adds where the run folder goes (`--experiment`, `--run_name`,
`--output_root`), which logger to use (`--logger wandb|csv|none`, W&B offline unless configured
online), `--amp` (16-mixed on GPU, bf16-mixed on CPU) and `--tta` (6-fold test-time augmentation of
any model in validate/test/predict, overriding model.tta and checkpoint hyperparameters). The
standard callbacks (checkpointing on val/dice + last.ckpt, run folder, complexity, prediction grid,
training curves, LR monitor, rich progress bar) are always added; recipe callbacks (EMA, progressive
resizing, early stopping) come from `trainer.callbacks` in the experiment YAML (experiments/<model>/).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.training.run_folder import RunConfigCallback, RunFolderCallback
from lesion_lightning.training.task import SegmentationTask

LOGGERS = ("wandb", "csv", "none")
RUN_DIR_ENV = "LESION_LIGHTNING_RUN_DIR"


def latest_run_with_checkpoint(experiment_dir: Path) -> Path | None:
    """Most recent run folder of an experiment that holds checkpoints/last.ckpt (for `--ckpt_path last`)."""
    runs = [p.parent.parent for p in experiment_dir.glob("*/checkpoints/last.ckpt")]
    return max(runs, key=lambda p: (p / "checkpoints" / "last.ckpt").stat().st_mtime) if runs else None


class BestAndLastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is always the latest epoch.

    Lightning 2.6 writes `last.ckpt` only when a top-k checkpoint was written at the same step, so an
    epoch that does not improve the monitored metric leaves `last.ckpt` at an older epoch (and
    `--ckpt_path last` would resume from there). This writes it after every validation as well.
    """

    def _save_last_anyway(self, trainer: Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: Any) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    @property
    def state_key(self) -> str:
        # Same key as a plain ModelCheckpoint, so checkpoints written before this class still resume.
        return ModelCheckpoint.state_key.fget(self).replace(type(self).__qualname__, "ModelCheckpoint", 1)


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
        parser.add_argument("--checkpoint_monitor", type=str, default="val/dice",
                            help="metric that selects the best checkpoint (maximised)")
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
        from lesion_lightning.training.task import EnsembleTask

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

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        run_dir = self._run_dir()
        config["default_root_dir"] = str(run_dir)
        if config.get("logger") in (None, True):
            config["logger"] = self._logger(run_dir, f"{run_dir.parent.name}/{run_dir.name}")
        if self._options().get("amp"):
            config["precision"] = "16-mixed" if torch.cuda.is_available() and config.get("accelerator") != "cpu" else "bf16-mixed"
        monitor = self._options().get("checkpoint_monitor") or "val/dice"
        standard: list[Callback] = [
            BestAndLastCheckpoint(dirpath=str(run_dir / "checkpoints"), monitor=monitor, mode="max", save_last=True,
                            filename="best-{epoch:03d}", auto_insert_metric_name=False),
            RunFolderCallback(),
            *self._feature_callbacks(),
        ]
        if config.get("logger"):
            standard.append(LearningRateMonitor(logging_interval="epoch"))
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, RichProgressBar) for c in (config.get("callbacks") or [])
        ):
            standard.append(RichProgressBar(leave=True))
        return super()._instantiate_trainer(config, callbacks + standard)

    @staticmethod
    def _feature_callbacks() -> list[Callback]:
        from lesion_lightning.callbacks import ComplexityCallback, PredictionGridCallback, TrainingCurvesCallback

        return [ComplexityCallback(), PredictionGridCallback(), TrainingCurvesCallback()]


def _rewrite_legacy_args(argv: list[str]) -> list[str]:
    """Accept `--trainer.logger=csv|wandb|none` as a synonym of `--logger`."""
    out = []
    skip = False
    for i in range(len(argv)):
        if skip:
            skip = False
            continue
        arg = argv[i]
        if arg.startswith("--trainer.logger="):
            value = arg.split("=", 1)[1]
            if value.lower() in LOGGERS:
                out.append(f"--logger={value.lower()}")
                continue
        if arg == "--trainer.logger" and i + 1 < len(argv) and argv[i + 1].lower() in LOGGERS:
            out.append(f"--logger={argv[i + 1].lower()}")
            skip = True
            continue
        out.append(arg)
    return out


def finish_wandb_runs(trainer: Trainer | None) -> None:
    """Close the trainer's W&B runs so that everything logged is flushed to disk (offline run files are
    otherwise left mid-record until the process exits, and a later run in the same process would reuse them)."""
    for logger in getattr(trainer, "loggers", None) or []:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def build_cli(argv: list[str], run: bool = True) -> LesionCLI:
    cli = _build_cli(argv, run)
    if run:
        finish_wandb_runs(getattr(cli, "trainer", None))
    return cli


def _build_cli(argv: list[str], run: bool) -> LesionCLI:
    return LesionCLI(
        SegmentationTask,
        LesionDataModule,
        subclass_mode_model=True,
        save_config_callback=RunConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=42,
        args=_rewrite_legacy_args(argv),
        run=run,
        auto_configure_optimizers=False,
    )


def run_lightning_cli(argv: list[str]) -> int:
    build_cli(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_lightning_cli(sys.argv[1:]))

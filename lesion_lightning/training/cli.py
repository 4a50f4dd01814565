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
import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.paths import REPO_ROOT
from lesion_lightning.training import run_folder
from lesion_lightning.training.loggers import DEFAULT_PROJECT, LOGGERS, finish_wandb_runs, make_logger
from lesion_lightning.training.quiet import silence_irrelevant_messages, silence_resume_notice
from lesion_lightning.training.run_folder import RunConfigCallback
from lesion_lightning.training.task import LesionSegmentationModule

RUN_DIR_ENV = "LESION_LIGHTNING_RUN_DIR"
BASE_CONFIG = REPO_ROOT / "experiments" / "base.yaml"


def launch_rank() -> int:
    """This process's global rank as its launcher set it before Lightning starts: torchrun (`RANK`), srun
    (`SLURM_PROCID`) or Lightning's own DDP launcher (`LOCAL_RANK`, one node); 0 for a single process."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def external_launch_world_size() -> int:
    """Processes started by an outside launcher (torchrun's `WORLD_SIZE`, srun's `SLURM_NTASKS`); 1 if none."""
    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


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
        parser.add_argument("--wandb_project", type=str, default=DEFAULT_PROJECT, help="W&B project name")
        parser.add_argument("--amp", type=bool, default=False,
                            help="mixed precision: 16-mixed on GPU, bf16-mixed on CPU (overrides trainer.precision)")
        parser.set_defaults({"model": {"class_path": "lesion_lightning.training.task.SegmentationTask"}})
        parser.add_argument("--force_resume", type=bool, default=False,
                            help="fit --ckpt_path: resume although data/model options differ from the run's config.yaml")
        parser.add_argument("--score_resolution", type=str, default="network",
                            help="validate/test: also score the subset at each image's original size (original: "
                                 "predictions resized back, metrics.json <stage>_original_size); default network")
        parser.add_argument("--tta", type=bool | None, default=None,
                            help="6-fold test-time augmentation (identity, flips, rot90/270; probabilities averaged) "
                                 "for validate/test/predict and fit's validation epochs; overrides model.tta, also "
                                 "the value a --ckpt_path checkpoint carries (default: the model's own setting)")

    def before_instantiate_classes(self) -> None:
        opts = self._options()
        self.run_dir = self._run_dir()
        if opts.get("amp"):  # recorded in config.yaml as the precision actually used
            on_gpu = torch.cuda.is_available() and opts["trainer"].get("accelerator") != "cpu"
            opts["trainer"]["precision"] = "16-mixed" if on_gpu else "bf16-mixed"
        if opts.get("score_resolution") not in ("network", "original"):
            raise SystemExit(f"error: --score_resolution {opts.get('score_resolution')!r}: choose network or original")
        ckpt = opts.get("ckpt_path") if self.subcommand else None
        if ckpt and ckpt not in ("last", "best", "hpc") and not Path(ckpt).is_file():
            raise SystemExit(f"error: --ckpt_path {ckpt}: no such checkpoint file (give a .ckpt file or `last`)")
        if self.subcommand == "fit" and ckpt:
            silence_resume_notice()
            if not opts.get("force_resume"):
                self._refuse_changed_resume(opts)
        if launch_rank() == 0 and opts["data"].get("root") is None:
            run_folder.announce_default_data(opts["data"].get("dataset") or "ham10000")

    def _refuse_changed_resume(self, opts: Any) -> None:
        ckpt = str(opts.get("ckpt_path"))
        run = self.run_dir if ckpt == "last" else run_folder.run_of_checkpoint(Path(ckpt))
        if run is None or not (run / "config.yaml").is_file():
            return
        saved = yaml.safe_load((run / "config.yaml").read_text()) or {}
        current = yaml.safe_load(self._parser(self.subcommand).dump(opts, skip_none=False))
        changed = run_folder.changed_options(saved, current)
        if changed:
            raise SystemExit(f"error: --ckpt_path {ckpt}: the run {run} was trained with other options: "
                             f"{'; '.join(changed)}. Use the run's options, or --force_resume=true to resume anyway")

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
        if launch_rank() > 0 and os.environ.get(RUN_DIR_ENV):
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
        ckpt = opts.get("ckpt_path")
        if not run_name and self.subcommand in ("validate", "test", "predict") and ckpt and Path(ckpt).is_file():
            tested = run_folder.run_of_checkpoint(Path(ckpt))
            if tested is not None:
                return tested  # results go next to the run they evaluate
        if not run_name and ckpt == "last":
            latest = latest_run_with_checkpoint(experiment_dir)
            if latest is None:
                raise SystemExit(f"error: --ckpt_path last, but no run of experiment {experiment!r} under {experiment_dir} "
                                 "has checkpoints/last.ckpt")
            return latest
        if not run_name and os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
            run_name = os.environ["WANDB_RUN_ID"]  # a W&B agent's trial: the server's run id, unique across agents
        if not run_name and external_launch_world_size() > 1:
            # torchrun/srun start every rank themselves (on other nodes too): timestamps would differ per rank
            raise SystemExit("error: a multi-process launch (torchrun or srun) needs --run_name, the same on every "
                             "rank (e.g. the SLURM job id), so that all ranks share one run folder")
        if not run_name:
            run_name = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return experiment_dir / run_name

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer of the run folder: its root and logger, and the configured callbacks adapted to the run
        (checkpoints into the run folder; no LR monitor without a logger, no progress bar when
        `trainer.enable_progress_bar` is false). Checks first that the run folder can hold the checkpoints."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        run_dir = self.run_dir
        if launch_rank() == 0:
            run_folder.check_writable(run_dir, self.model)
            if self.subcommand:  # running, not only building (build_cli(run=False))
                run_folder.hold_run_lock(run_dir)
        kwargs["default_root_dir"] = str(run_dir)
        logger = trainer_config.get("logger")
        if logger in (None, True):
            logger = kwargs["logger"] = make_logger(self._options().get("logger") or "wandb", run_dir,
                                                    project=self._options().get("wandb_project"),
                                                    stage=self.subcommand or "fit")
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


def score_original_size_after(cli: LesionCLI) -> None:
    """validate/test --score_resolution original: score the same subset again at each image's own size."""
    if cli._options().get("score_resolution") != "original" or cli.subcommand not in ("validate", "test"):
        return
    if not cli.trainer.is_global_zero:
        return
    from lesion_lightning.evaluation.original_size import write_original_size_section

    stage = "val" if cli.subcommand == "validate" else "test"
    ckpt = cli.trainer.ckpt_path
    if not ckpt:
        raise SystemExit("error: --score_resolution original needs --ckpt_path (a trained checkpoint of a run)")
    values = write_original_size_section(cli.run_dir, stage, ckpt)
    print(f"{stage} at original size: dice {values['dice']:.4f}, iou {values['iou']:.4f} "
          f"({int(values['num_images'])} images) -> {cli.run_dir / 'metrics.json'}")


def build_cli(argv: list[str], run: bool = True) -> LesionCLI:
    """Parse `argv` (subcommand first unless `run=False`), build model, data and trainer, and run the subcommand;
    then print where the results went."""
    silence_irrelevant_messages()
    try:
        cli = _make_cli(argv, run)
        if run:
            score_original_size_after(cli)
    finally:
        run_folder.release_run_locks()  # the stage is over: the folder may be used again (reproduce: fit, then test)
    if run:
        finish_wandb_runs(cli.trainer)
        if cli.trainer.is_global_zero:
            run_folder.print_run_folder(cli.run_dir, cli.subcommand)
    return cli


def _make_cli(argv: list[str], run: bool) -> LesionCLI:
    defaults = {"default_config_files": [str(BASE_CONFIG)]}
    return LesionCLI(
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

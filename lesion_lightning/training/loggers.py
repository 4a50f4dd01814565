"""The experiment logger of a run: W&B (online with credentials, offline otherwise), CSV or none.

A run folder's `fit` is one W&B run: its id is kept in the run folder (`wandb_run_id`), so a
`--ckpt_path last` resume continues the same W&B run. Its validate/test runs join it in one W&B group
(the run folder, `<experiment>/<run>`) with `job_type` validate/test. Under a sweep agent (`WANDB_RUN_ID`
set) the agent's id wins.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from lesion_lightning.sweeps.spec import DEFAULT_PROJECT

LOGGERS = ("wandb", "csv", "none")
__all__ = ["DEFAULT_PROJECT", "LOGGERS", "finish_wandb_runs", "make_logger", "wandb_mode", "wandb_run_id"]
WANDB_ID_FILE = "wandb_run_id"
WANDB_HOST = "api.wandb.ai"


def wandb_mode(environ: dict[str, str] | None = None, netrc_path: str | None = None) -> tuple[str, str]:
    """(mode, why): WANDB_MODE when set, else online when an API key or a `wandb login` entry exists, else offline."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"], "WANDB_MODE is set"
    if env.get("WANDB_API_KEY"):
        return "online", "WANDB_API_KEY is set"
    try:
        if netrc.netrc(netrc_path).authenticators(env.get("WANDB_BASE_URL", WANDB_HOST).split("//")[-1]):
            return "online", "credentials from `wandb login` found"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline", "no W&B credentials found; `wandb login` to log online, `wandb sync` uploads offline runs"


def wandb_run_id(run_dir: Path) -> str | None:
    """The W&B run id of a run folder (created on first use); None under a sweep agent, which sets its own."""
    if os.environ.get("WANDB_RUN_ID"):
        return None
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    from wandb.sdk.lib.runid import generate_id

    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = generate_id()
    path.write_text(run_id + "\n")
    return run_id


def make_logger(choice: str, run_dir: Path, *, project: str, stage: str) -> Any:
    """The logger for `--logger` (False for none); W&B says in one line whether it logs online or offline."""
    choice = choice.lower()
    if choice not in LOGGERS:
        raise SystemExit(f"error: --logger must be one of {', '.join(LOGGERS)}, got {choice!r}")
    if choice == "none":
        return False
    if choice == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    mode, why = wandb_mode()
    os.environ.setdefault("WANDB_SILENT", "true")  # W&B's own banner and run summary; our line says where it goes
    if os.environ["WANDB_SILENT"].lower() == "true":
        import wandb

        # Silent from now on: W&B checks its settings (and warns about the `anonymous` option Lightning always
        # passes) before it applies WANDB_SILENT.
        wandb.termsetup(wandb.Settings(silent=True), None)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        print(f"W&B: {mode} ({why}). Run files: {run_dir / 'wandb'}")
    group = f"{run_dir.parent.name}/{run_dir.name}"
    if stage == "fit":
        return WandbLogger(project=project, name=group, save_dir=str(run_dir), id=wandb_run_id(run_dir),
                           resume="allow", group=group, job_type=stage, mode=mode)
    return WandbLogger(project=project, name=f"{group} {stage}", save_dir=str(run_dir), group=group, job_type=stage,
                       mode=mode)


def finish_wandb_runs(trainer: Trainer | None) -> None:
    """Close the trainer's W&B runs so that everything logged is flushed to disk (offline run files are
    otherwise left mid-record until the process exits, and a later run in the same process would reuse them)."""
    for logger in getattr(trainer, "loggers", None) or []:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()

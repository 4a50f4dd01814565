"""Locate a run's checkpoint, read it safely and rebuild its trained task (see the package docstring)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import yaml

from lesion_lightning.inference.loaded import (  # noqa: F401 - names this module has always offered
    DEFAULT_TASK_CLASS,
    CheckpointError,
    LoadedTask,
    import_task_class,
)
from lesion_lightning.inference.preprocessing import resolve_preprocessing

# Keys LightningCLI adds to the saved hyperparameters that are not constructor arguments.
_CLI_KEYS = ("_class_path", "_instantiator")


# -- locating and reading checkpoints ------------------------------------------------------------
def resolve_checkpoint(run_or_ckpt: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) for a run folder, its checkpoints/ folder, a .ckpt file, or
    published weights (a .safetensors file or its name in weights/; no run folder)."""
    from lesion_lightning.inference.published import find_published, published_names

    published = find_published(run_or_ckpt)
    if published is not None:
        return published, None
    path = Path(run_or_ckpt).expanduser()
    if not path.exists():
        names = ", ".join(published_names()) or "none"
        raise CheckpointError(f"--ckpt {path}: no such run folder, checkpoint file or published weights "
                              f"(published: {names})")
    if path.is_file():
        if path.suffix != ".ckpt":
            raise CheckpointError(f"--ckpt {path}: expected a .ckpt or .safetensors file, a run folder or "
                                  "the name of published weights")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        if run_dir is not None and not (run_dir / "config.yaml").exists():
            run_dir = None
        return path, run_dir
    ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    run_dir = ckpt_dir.parent if ckpt_dir.name == "checkpoints" else path
    best = sorted(ckpt_dir.glob("best*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if best:
        return best[-1], run_dir
    if (ckpt_dir / "last.ckpt").is_file():
        return ckpt_dir / "last.ckpt", run_dir
    others = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if others:
        return others[-1], run_dir
    raise CheckpointError(f"--ckpt {path}: no checkpoint found (looked for {ckpt_dir}/best-*.ckpt and last.ckpt)")


def load_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Read a Lightning checkpoint on the CPU, with `weights_only=True` unless `trust_checkpoint`."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: the checkpoint holds objects that weights_only loading refuses ({str(exc).splitlines()[0]}). "
            "Full unpickling can execute arbitrary code: only if you trust where this file comes from, "
            "load it with --trust-checkpoint (trust_checkpoint=True)."
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def _read_run_config(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return {}
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{run_dir / 'config.yaml'}: invalid YAML: {exc}") from exc


# -- the task --------------------------------------------------------------------------------------
def load_task(run_or_ckpt: str | Path, *, trust_checkpoint: bool = False, device: str | torch.device = "cpu") -> LoadedTask:
    """Rebuild the trained task (in eval mode on `device`) with its preprocessing from a run or checkpoint."""
    ckpt_path, run_dir = resolve_checkpoint(run_or_ckpt)
    if ckpt_path.suffix == ".safetensors":
        from lesion_lightning.inference.published import load_published

        return load_published(ckpt_path, device=device)
    ckpt = load_checkpoint(ckpt_path, trust_checkpoint=trust_checkpoint)
    run_config = _read_run_config(run_dir)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    config_model = run_config.get("model") if isinstance(run_config.get("model"), dict) else {}
    if not hparams and config_model:
        hparams = dict(config_model.get("init_args") or {})
    class_path = hparams.get("_class_path") or config_model.get("class_path") or DEFAULT_TASK_CLASS
    cls = import_task_class(str(class_path))
    init_args = {k: v for k, v in hparams.items() if k not in _CLI_KEYS}
    try:
        task = cls(**init_args)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{ckpt_path}: cannot rebuild {class_path} from the saved hyperparameters: {exc}") from exc
    try:
        task.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_path}: weights do not match {class_path}({init_args.get('model')!r}): {exc}") from exc
    task.eval().to(device)
    try:
        preprocessing = resolve_preprocessing(ckpt, run_config, str(init_args.get("model", task.model_name)))
    except ValueError as exc:
        raise CheckpointError(f"{ckpt_path}: {exc}") from exc
    return LoadedTask(task=task, checkpoint_path=ckpt_path, run_dir=run_dir, preprocessing=preprocessing,
                      hparams=init_args, run_config=run_config, class_path=str(class_path),
                      datamodule_hparams=dict(ckpt.get("datamodule_hyper_parameters") or {}),
                      epoch=ckpt.get("epoch"), global_step=ckpt.get("global_step"))



"""A trained task as inference uses it (`LoadedTask`), and the error of a run or checkpoint that cannot be
used. Shared by checkpoint loading (`checkpoint`) and published weights (`published`), which import it and
not each other's loaders."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_lightning.inference.preprocessing import Preprocessing
from lesion_lightning.training.task import SegmentationTask

DEFAULT_TASK_CLASS = "lesion_lightning.training.task.SegmentationTask"


class CheckpointError(RuntimeError):
    """A run folder or checkpoint that cannot be used; the message names the path."""


def import_task_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise CheckpointError(f"task class {class_path!r}: expected a dotted path module.Class")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"task class {class_path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SegmentationTask)):
        raise CheckpointError(f"task class {class_path!r} is not a subclass of SegmentationTask")
    return cls


@dataclass
class LoadedTask:
    task: SegmentationTask
    checkpoint_path: Path
    run_dir: Path | None
    preprocessing: Preprocessing
    hparams: dict[str, Any]
    run_config: dict[str, Any] = field(default_factory=dict)
    class_path: str = DEFAULT_TASK_CLASS
    datamodule_hparams: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    global_step: int | None = None
    split_file: Path | None = None  # the training split manifest (a run's split.json by default)
    card: dict[str, Any] | None = None  # the model card of published weights

    @property
    def split_path(self) -> Path | None:
        if self.split_file is not None:
            return self.split_file
        return self.run_dir / "split.json" if self.run_dir is not None else None

    @property
    def model_name(self) -> str:
        return str(self.hparams.get("model", self.task.model_name))

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.hparams.get("model_kwargs") or {})

    @property
    def threshold(self) -> float:
        return float(self.task.threshold)

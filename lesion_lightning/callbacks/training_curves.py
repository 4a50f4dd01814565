"""TrainingCurvesCallback: per-epoch train/val loss, Dice and IoU as `history.csv` and `curves.png`."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


def _value(metrics: dict[str, Any], key: str) -> float | None:
    # A metric logged with on_step and on_epoch appears as `<key>_epoch` (and `<key>` is the last step's).
    for k in (f"{key}_epoch", key):
        if k in metrics:
            v = metrics[k]
            return float(v.item() if hasattr(v, "item") else v)
    return None


class TrainingCurvesCallback(pl.Callback):
    """Record `train/<m>` and `val/<m>` for each metric per epoch and, at the end of fit (also when it
    stops on an exception or Ctrl+C), write `history.csv` and a `curves.png` with one panel per metric.

    Timing: the task logs its train epoch metrics in its own `on_train_epoch_end`, which Lightning
    runs after the callbacks' one, so an epoch's train values are read when the next epoch starts
    (or at train end, or when a checkpoint is saved); val values are read at `on_validation_end`
    (sanity check skipped). The history is part of the callback's checkpoint state, so a resumed
    fit plots all epochs.

    Args:
        metrics: metric names; each becomes a panel with its train and val curves.
    """

    def __init__(self, metrics: list[str] | None = None) -> None:
        self.metrics = list(metrics) if metrics else ["loss", "dice", "iou"]
        self.history: dict[int, dict[str, float]] = {}
        self._pending_train_epoch: int | None = None
        self._trainer: pl.Trainer | None = None

    # -- recording -------------------------------------------------------------------------------
    def _record(self, trainer: pl.Trainer, stage: str, epoch: int) -> None:
        row = self.history.setdefault(epoch, {})
        metrics = trainer.callback_metrics
        for m in self.metrics:
            v = _value(metrics, f"{stage}/{m}")
            if v is not None:
                row[f"{stage}/{m}"] = v

    def _flush_train(self, trainer: pl.Trainer) -> None:
        if self._pending_train_epoch is not None:
            self._record(trainer, "train", self._pending_train_epoch)
            self._pending_train_epoch = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_train(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending_train_epoch = trainer.current_epoch

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._record(trainer, "val", trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_train(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer)
        self._trainer = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # The interrupted epoch's train values are incomplete: only epochs whose end was reached count.
        self._flush_train(trainer)
        self._trainer = None
        try:
            self.write(trainer)
        except Exception:  # never hide the original exception behind a plotting error
            pass

    # -- checkpoint state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # ModelCheckpoint saves at epoch end after the task logged its train epoch metrics: record them
        # now so that a run resumed from that checkpoint keeps this epoch's train values.
        if self._trainer is not None:
            self._flush_train(self._trainer)
        return {"history": {int(k): dict(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {int(k): dict(v) for k, v in state_dict.get("history", {}).items()}

    # -- output ----------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        return [f"{stage}/{m}" for m in self.metrics for stage in ("train", "val")]

    def write(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        columns = self.columns()
        epochs = sorted(self.history)
        with open(run_dir / "history.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", *columns])
            for e in epochs:
                writer.writerow([e, *(self.history[e].get(c, "") for c in columns)])
        self.plot(run_dir / "curves.png")

    def plot(self, path: Path) -> None:
        # Figure + Agg canvas directly: no pyplot global state, works in any backend/thread.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        epochs = sorted(self.history)
        fig = Figure(figsize=(4.2 * len(self.metrics), 3.6), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(self.metrics), squeeze=False)[0]
        for ax, m in zip(axes, self.metrics):
            for stage, style in (("train", "-o"), ("val", "-s")):
                key = f"{stage}/{m}"
                pts = [(e, self.history[e][key]) for e in epochs
                       if key in self.history[e] and math.isfinite(self.history[e][key])]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, style, markersize=3, label=stage)
            ax.set_title("Dice" if m == "dice" else "IoU" if m == "iou" else m.capitalize())
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.savefig(path, dpi=100)

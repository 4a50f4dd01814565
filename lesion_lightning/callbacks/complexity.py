"""ComplexityCallback: parameters, MACs/FLOPs and model memory at fit start, logged and saved."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from lesion_lightning.data.sizes import parse_size
from lesion_lightning.utils.complexity import measure_complexity

DEFAULT_SIZE = 256


class ComplexityCallback(pl.Callback):
    """Measure the model's size and cost once, at fit start (rank 0).

    Records total and trainable parameters, FLOPs and MACs of one forward pass of a 1x3xHxW input
    (torch.utils.flop_counter; one MAC = 2 FLOPs) at each input size, and model memory in MB
    (float32 parameters x 4 bytes / 1024^2, LANET eq. 4). The figures go to every logger as
    hyperparameters `complexity/...` (and into the W&B run summary), and to `complexity.json` in the
    run folder. The first size is the primary one (keys without a size suffix); others get `_HxW`.

    Args:
        input_sizes: square input sizes to measure at; default the DataModule's `image_size`
            (or 256 when the DataModule has none).
    """

    def __init__(self, input_sizes: list[int] | None = None) -> None:
        if input_sizes is not None:
            if not input_sizes or any(not isinstance(s, int) or s <= 0 for s in input_sizes):
                raise ValueError(f"ComplexityCallback.input_sizes: expected positive ints, got {input_sizes!r}")
        self.input_sizes = input_sizes
        self.result: dict[str, Any] | None = None

    def _sizes(self, trainer: pl.Trainer) -> list[tuple[int, int]]:
        if self.input_sizes:
            return [parse_size(s, "input_sizes") for s in self.input_sizes]
        size = getattr(getattr(trainer, "datamodule", None), "image_size", None)
        return [parse_size(size) if size is not None else (DEFAULT_SIZE, DEFAULT_SIZE)]

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        model = getattr(pl_module, "model", pl_module)
        result: dict[str, Any] = {
            "model": getattr(pl_module, "model_name", type(model).__name__),
            "sizes": [],
        }
        for h, w in self._sizes(trainer):
            try:
                c = measure_complexity(model, (3, h, w))
            except Exception as err:  # a model may reject some sizes; training must not die for a report
                warnings.warn(f"ComplexityCallback: could not measure FLOPs at {h}x{w}: {err}", UserWarning,
                              stacklevel=2)
                result["sizes"].append({"input_size": [3, h, w], "error": str(err)})
                continue
            result.setdefault("params", c.params)
            result.setdefault("trainable_params", c.trainable_params)
            result.setdefault("memory_mb", c.memory_mb)
            result["sizes"].append({k: v for k, v in c.as_dict().items()
                                    if k in ("input_size", "flops", "macs", "gflops", "gmacs")})
        return result

    @staticmethod
    def flat(result: dict[str, Any]) -> dict[str, Any]:
        """`complexity/...` keys for loggers."""
        out = {f"complexity/{k}": result[k] for k in ("params", "trainable_params", "memory_mb") if k in result}
        measured = [s for s in result["sizes"] if "error" not in s]
        for i, s in enumerate(measured):
            _, h, w = s["input_size"]
            suffix = "" if i == 0 else f"_{h}x{w}"
            for k in ("flops", "macs", "gflops", "gmacs"):
                out[f"complexity/{k}{suffix}"] = s[k]
            if i == 0:
                out["complexity/input_size"] = f"{h}x{w}"
        return out

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.result = self.measure(trainer, pl_module)
        flat = self.flat(self.result)
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)
            if isinstance(logger, WandbLogger):
                for k, v in flat.items():
                    logger.experiment.summary[k] = v
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "complexity.json").write_text(json.dumps(self.result, indent=2) + "\n")

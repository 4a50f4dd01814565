"""PredictionGridCallback: validation images with predicted (green) and true (red) lesion contours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from lesion_lightning.metrics import binarize
from lesion_lightning.utils.visualize import make_grid, overlay_contours, to_display_uint8

CLASS_LABELS = {0: "background", 1: "lesion"}


class PredictionGridCallback(pl.Callback):
    """Every `every_n_epochs` epochs (epochs 0, N, 2N, ... and the last one), show the first
    `num_images` validation images (the val loader is not shuffled, so the same images each time).

    Writes `predictions/epoch_XXX.png` in the run folder (a grid of contour overlays) and, with a
    WandbLogger, logs `val/predictions`: one `wandb.Image` per sample with interactive
    `prediction` / `ground_truth` masks. Rank 0 only (it shows rank 0's share of the val set).

    Args:
        every_n_epochs: epoch interval.
        num_images: number of validation images in the grid.
        ncols: grid columns.
    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 8, ncols: int = 4) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"PredictionGridCallback.every_n_epochs must be >= 1, got {every_n_epochs}")
        if num_images < 1:
            raise ValueError(f"PredictionGridCallback.num_images must be >= 1, got {num_images}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.ncols = ncols
        self._samples: list[dict[str, Any]] = []
        self._active = False

    def _due(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return False
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch == trainer.max_epochs - 1
        return epoch % self.every_n_epochs == 0 or last

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples = []
        self._active = self._due(trainer)

    @torch.no_grad()
    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._active or dataloader_idx != 0 or len(self._samples) >= self.num_images:
            return
        images = batch["image"]
        probs = outputs.get("probs") if isinstance(outputs, dict) else None
        if probs is None:  # the step returned no probabilities: run the model once more
            logits = (pl_module.model if hasattr(pl_module, "model") else pl_module)(images)
            probs = pl_module.predict_probs(logits) if hasattr(pl_module, "predict_probs") else torch.sigmoid(logits)
        threshold = float(getattr(pl_module, "threshold", 0.5))
        masks = batch.get("mask")
        ids = batch.get("id")
        for i in range(min(images.shape[0], self.num_images - len(self._samples))):
            self._samples.append({
                "image": to_display_uint8(images[i]),
                "pred": binarize(probs[i, 0], threshold).to(torch.uint8).cpu().numpy(),
                "gt": None if masks is None else (masks[i, 0] > 0.5).to(torch.uint8).cpu().numpy(),
                "id": str(ids[i]) if ids is not None else f"{batch_idx}_{i}",
            })

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active or not self._samples:
            return
        self._active = False
        epoch = trainer.current_epoch
        overlays = [overlay_contours(s["image"], s["pred"], s["gt"]) for s in self._samples]
        out = Path(trainer.default_root_dir) / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_grid(overlays, self.ncols)).save(out / f"epoch_{epoch:03d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                masks = []
                for s in self._samples:
                    m = {"prediction": {"mask_data": s["pred"], "class_labels": CLASS_LABELS}}
                    if s["gt"] is not None:
                        m["ground_truth"] = {"mask_data": s["gt"], "class_labels": CLASS_LABELS}
                    masks.append(m)
                logger.log_image("val/predictions", [s["image"] for s in self._samples], step=trainer.global_step,
                                 masks=masks, caption=[f"{s['id']} (epoch {epoch})" for s in self._samples])
        self._samples = []


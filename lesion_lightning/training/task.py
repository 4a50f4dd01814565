"""SegmentationTask: the LightningModule that trains any registered architecture with supervision.

The architecture is a plain nn.Module from the model registry. `LesionSegmentationModule` holds what
every task shares (loss, metrics pooled and per image, test-time augmentation, the `EpochResult` of each
stage that the run folder records); `SegmentationTask` adds the model and its optimiser/scheduler recipe.
`EnsembleTask` (training/ensemble.py) evaluates trained runs through the same base.
"""

from __future__ import annotations

import inspect

from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lesion_lightning.losses import build_loss
from lesion_lightning.metrics import SegmentationMetrics, binarize
from lesion_lightning.models import create_model, get_model_spec
from lesion_lightning.models.lesion_head import lesion_probabilities
from lesion_lightning.training.optim import build_optimizer, build_scheduler

STAGES = ("train", "val", "test")


@dataclass(frozen=True)
class EpochResult:
    """A stage's metrics at the end of an epoch (and, for test, one row per image): what the run folder records."""

    stage: str
    metrics: dict[str, float]
    per_image: list[dict[str, Any]] = field(default_factory=list)


class LesionSegmentationModule(pl.LightningModule):
    """Binary lesion segmentation by `self.model` (logits): loss, metrics, TTA and the evaluation steps.

    Subclasses set `self.model` and call `_init_evaluation`. After each epoch end, `epoch_results[stage]`
    holds that stage's `EpochResult`.
    """

    model: nn.Module
    epoch_results: dict[str, EpochResult]

    def _init_evaluation(self, loss: Any, threshold: float, tta: bool) -> None:
        """Loss, threshold, TTA flag and the per-stage metrics."""
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"model.threshold must be in (0, 1), got {threshold}")
        self.criterion = build_loss(loss)
        self.threshold = threshold
        self.tta = bool(tta)
        # ModuleDict keys must not shadow nn.Module attributes (`train`), hence the suffix.
        self.metrics = nn.ModuleDict({f"{stage}_metrics": SegmentationMetrics(threshold=threshold) for stage in STAGES})
        self.epoch_results = {}

    # -- forward / probabilities ---------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def predict_probs(self, logits: torch.Tensor) -> torch.Tensor:
        return lesion_probabilities(logits)

    def _eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.tta:
            from lesion_lightning.models.tta import TTAWrapper

            return TTAWrapper(self.model)(x)
        return self.model(x)

    # -- steps -----------------------------------------------------------------------------------
    def _logits_and_loss(self, x: torch.Tensor, y: torch.Tensor, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        # a deep-supervision loss also scores the model's auxiliary outputs (not under TTA, which has none)
        if getattr(self.criterion, "uses_aux", False) and (stage == "train" or not self.tta):
            logits, aux = self.model(x, return_aux=True)
            return logits, self.criterion(logits, y, aux=aux)
        logits = self.model(x) if stage == "train" else self._eval_logits(x)
        return logits, self.criterion(logits, y)

    def _shared_step(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        x, y = batch["image"], batch["mask"]
        logits, loss = self._logits_and_loss(x, y, stage)
        probs = self.predict_probs(logits.float()).detach()
        self.metrics[f"{stage}_metrics"].update(probs, y, ids=batch.get("id"))
        batch_size = x.shape[0]
        # sync_dist: epoch values are means over all ranks' batches (one process: no-op)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
                 batch_size=batch_size, sync_dist=True)
        for name, value in getattr(self.criterion, "last_terms", {}).items():
            self.log(f"{stage}/loss_{name}", value, on_step=False, on_epoch=True, batch_size=batch_size,
                     sync_dist=True)
        return {"loss": loss, "probs": probs}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probs = self.predict_probs(self._eval_logits(batch["image"]).float())
        return {"id": batch.get("id"), "probs": probs, "mask": binarize(probs, self.threshold)}

    # -- metrics ---------------------------------------------------------------------------------
    def _log_epoch_metrics(self, stage: str) -> None:
        metric = self.metrics[f"{stage}_metrics"]
        values = metric.compute()
        # torchmetrics already synced the states, so every rank holds the same value and sync_dist's mean
        # changes nothing; it tells Lightning so (without it, one warning per metric under DDP).
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, prog_bar=key in ("dice", "iou"), sync_dist=True)
        per_image = metric.per_image() if stage == "test" else []
        self.epoch_results[stage] = EpochResult(stage, {k: float(v) for k, v in values.items()}, per_image)
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def _evaluate_rank_zero_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating. DDP broadcasts
        them before each training forward, after which each rank updates its own copy with its own batch:
        without this, rank 1 would validate with other statistics than the checkpoint rank 0 saves."""
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def on_validation_epoch_start(self) -> None:
        self._evaluate_rank_zero_buffers()

    def on_test_epoch_start(self) -> None:
        self._evaluate_rank_zero_buffers()

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")


class SegmentationTask(LesionSegmentationModule):
    """Supervised binary lesion segmentation of any registered model.

    Args:
        model: registered architecture name (see `lesion-lightning models`).
        model_kwargs: keyword arguments for the architecture's constructor.
        loss: loss name (`bce`, `dice`, `bce_dice`, `jaccard`, `l1`, `ce`), a dict
            `{"name": ..., <options>}` or a list of weighted terms `[{"name": ..., "weight": ...}]`.
        optimizer: `sgd`, `adam` or `adamw`.
        lr: learning rate.
        weight_decay: weight decay (AdamW: decoupled).
        momentum: SGD momentum.
        betas: Adam/AdamW betas.
        scheduler: `cosine`, `step`, `plateau` or `none`.
        scheduler_kwargs: options of the scheduler (cosine: `t_max` epochs, default max_epochs, and
            `eta_min`; step: `step_size`, `gamma`; plateau: `factor`, `patience`).
        warmup_epochs: linear learning-rate warm-up epochs before the scheduler.
        threshold: probability threshold for the binary mask in metrics and predictions.
        tta: evaluate/predict with 6-fold test-time augmentation (flips and 90-degree rotations).
    """

    def __init__(
        self,
        model: str = "simple_unet",
        model_kwargs: dict[str, Any] | None = None,
        loss: str | dict[str, Any] | list[dict[str, Any]] = "bce_dice",
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "none",
        scheduler_kwargs: dict[str, Any] | None = None,
        warmup_epochs: int = 0,
        threshold: float = 0.5,
        tta: bool = False,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"model.lr must be positive, got {lr}")
        self.save_hyperparameters()
        self.model_name = model
        self.model = create_model(model, **(model_kwargs or {}))
        self.num_classes = get_model_spec(model).num_classes
        self._init_evaluation(loss, threshold, tta)
        gives_aux = "return_aux" in inspect.signature(self.model.forward).parameters
        if getattr(self.criterion, "uses_aux", False) and not gives_aux:
            raise ValueError(f"model.loss: {loss!r} scores auxiliary outputs, which model {model!r} does not give "
                             "(it has no forward(x, return_aux=True))")
        channels = int((model_kwargs or {}).get("in_channels", get_model_spec(model).input_size[0]))
        _, h, w = get_model_spec(model).input_size
        # Lightning's model summary runs this input to count FLOPs (setup() switches to the data's size).
        self.example_input_array = torch.zeros(1, channels, h, w)

    def setup(self, stage: str) -> None:
        size = getattr(getattr(self._trainer, "datamodule", None), "image_size", None)
        if isinstance(size, tuple) and len(size) == 2:
            self.example_input_array = torch.zeros(1, self.example_input_array.shape[1], *size)

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = build_optimizer(
            self.parameters(), hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay, momentum=hp.momentum,
            betas=tuple(hp.betas),
        )
        max_epochs = self.trainer.max_epochs if self.trainer is not None and self.trainer.max_epochs else 1
        scheduler = build_scheduler(
            optimizer, hp.scheduler, max_epochs=max(1, max_epochs), warmup_epochs=hp.warmup_epochs,
            **(hp.scheduler_kwargs or {}),
        )
        if scheduler is None:
            return optimizer
        config = {"scheduler": scheduler, "interval": "epoch"}
        if hp.scheduler == "plateau":
            config["monitor"] = "val/dice"
        return {"optimizer": optimizer, "lr_scheduler": config}

"""SegmentationTask: the LightningModule that trains any registered architecture with supervision.

The architecture is a plain nn.Module from the model registry; this module adds the loss, the
optimiser/scheduler recipe, the metrics (pooled and per-image) and test-time augmentation.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lesion_lightning.losses import build_loss
from lesion_lightning.metrics import SegmentationMetrics
from lesion_lightning.models import create_model, get_model_spec
from lesion_lightning.training.optim import build_optimizer, build_scheduler

STAGES = ("train", "val", "test")


def lesion_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) lesion probabilities from a sigmoid head (1 channel) or a softmax head (2 channels)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1:2]
    raise ValueError(f"expected a 1-channel (sigmoid) or 2-channel (softmax) head, got {logits.shape[1]} channels")


class SegmentationTask(pl.LightningModule):
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
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"model.threshold must be in (0, 1), got {threshold}")
        if lr <= 0:
            raise ValueError(f"model.lr must be positive, got {lr}")
        self.save_hyperparameters()
        self.model_name = model
        self.model = create_model(model, **(model_kwargs or {}))
        self.num_classes = get_model_spec(model).num_classes
        self._init_evaluation(loss, threshold, tta)

    def _init_evaluation(self, loss: Any, threshold: float, tta: bool) -> None:
        """Loss, threshold, TTA flag and the per-stage metrics (shared with EnsembleTask)."""
        self.criterion = build_loss(loss)
        self.threshold = threshold
        self.tta = bool(tta)
        # ModuleDict keys must not shadow nn.Module attributes (`train`), hence the suffix.
        self.metrics = nn.ModuleDict({f"{stage}_metrics": SegmentationMetrics(threshold=threshold) for stage in STAGES})

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
    def _shared_step(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        x, y = batch["image"], batch["mask"]
        logits = self.model(x) if stage == "train" else self._eval_logits(x)
        loss = self.criterion(logits, y)
        probs = self.predict_probs(logits.float()).detach()
        self.metrics[f"{stage}_metrics"].update(probs, y, ids=batch.get("id"))
        batch_size = x.shape[0]
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
                 batch_size=batch_size, sync_dist=stage != "train")
        for name, value in getattr(self.criterion, "last_terms", {}).items():
            self.log(f"{stage}/loss_{name}", value, on_step=False, on_epoch=True, batch_size=batch_size,
                     sync_dist=stage != "train")
        return {"loss": loss, "probs": probs}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probs = self.predict_probs(self._eval_logits(batch["image"]).float())
        return {"id": batch.get("id"), "probs": probs, "mask": probs >= self.threshold}

    # -- metrics ---------------------------------------------------------------------------------
    def _log_epoch_metrics(self, stage: str) -> None:
        metric = self.metrics[f"{stage}_metrics"]
        values = metric.compute()
        # torchmetrics already synced the state across processes: no sync_dist averaging here.
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, prog_bar=key in ("dice", "iou"), sync_dist=False)
        self.last_epoch_metrics = getattr(self, "last_epoch_metrics", {})
        self.last_epoch_metrics[stage] = {k: float(v) for k, v in values.items()}
        if stage == "test":
            self.last_per_image = metric.per_image()
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

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


class LesionLogit(nn.Module):
    """A member network as a 1-channel lesion-logit model: a 2-channel softmax head [z0, z1] becomes
    z1 - z0 (softmax(z)[1] == sigmoid(z1 - z0), exactly), a 1-channel head passes through."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if logits.shape[1] == 1:
            return logits
        if logits.shape[1] == 2:
            return logits[:, 1:2] - logits[:, 0:1]
        raise ValueError(f"ensemble member: expected a 1- or 2-channel head, got {logits.shape[1]} channels")


ENSEMBLE_WEIGHTS = ("val_dice",)


class EnsembleTask(SegmentationTask):
    """Evaluate trained runs as one model: the performance-weighted ensemble (MedLiteNet Sec. I-C).

    The members are trained separately (`fit` each preset); this task loads their checkpoints and
    averages their lesion **probabilities** with weights that sum to 1 (`WeightedEnsemble`), so
    `validate`, `test` and `predict` go through the same metrics, run folder and `--tta` as any model.
    It cannot be trained (`fit` is refused).

    Args:
        members: run folders (their best checkpoint, else last.ckpt) or `.ckpt` files, one per member.
        weights: `val_dice` (default): each member's pooled Dice on the DataModule's validation subset,
            measured when evaluation starts (the paper's performance weighting), or a list of
            non-negative scores, one per member (normalised to sum 1).
        loss: loss reported as `<stage>/loss` (the ensemble's logits are logit(weighted mean probability)).
        threshold: probability threshold of the masks.
        tta: 6-fold test-time augmentation of the whole ensemble.
        max_params: refuse an ensemble whose members hold more parameters in total (MedLiteNet: 10M).
        trust_checkpoint: unpickle member checkpoints fully (only for files you trust).

    After the weights are known, `member_scores`, `member_weights` and `ensemble.json` in the run folder
    record members, checkpoints, scores, weights and parameter counts.
    """

    def __init__(
        self,
        members: list[str] | None = None,
        weights: str | list[float] = "val_dice",
        loss: str | dict[str, Any] | list[dict[str, Any]] = "bce_dice",
        threshold: float = 0.5,
        tta: bool = False,
        max_params: int | None = None,
        trust_checkpoint: bool = False,
    ) -> None:
        pl.LightningModule.__init__(self)
        from lesion_lightning.inference import load_task
        from lesion_lightning.models.ensemble import WeightedEnsemble, weights_from_scores

        members = list(members or [])
        if len(members) < 2:
            raise ValueError(f"model.members: an ensemble needs at least 2 trained runs or checkpoints, got {members}")
        if isinstance(weights, str):
            if weights not in ENSEMBLE_WEIGHTS:
                raise ValueError(f"model.weights: {weights!r}; give one of {', '.join(ENSEMBLE_WEIGHTS)} or a list "
                                 "of scores, one per member")
        else:
            weights = [float(w) for w in weights]
            if len(weights) != len(members):
                raise ValueError(f"model.weights: {len(members)} members but {len(weights)} weights")
            try:
                weights_from_scores(weights)
            except ValueError as exc:
                raise ValueError(f"model.weights: {exc}") from None
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"model.threshold must be in (0, 1), got {threshold}")
        self.save_hyperparameters()
        self.model_name = "ensemble"
        self.num_classes = 1
        self.member_info: list[dict[str, Any]] = []
        nets = []
        for path in members:
            try:
                loaded = load_task(path, trust_checkpoint=trust_checkpoint)
            except Exception as exc:  # CheckpointError and friends: name the option and the path
                raise ValueError(f"model.members: cannot load {path!r}: {exc}") from exc
            net = loaded.task.model
            nets.append(LesionLogit(net))
            self.member_info.append({
                "member": str(path), "checkpoint": str(loaded.checkpoint_path), "model": loaded.model_name,
                "model_kwargs": loaded.model_kwargs, "params": sum(p.numel() for p in net.parameters()),
                "augment": loaded.preprocessing.preset, "epoch": loaded.epoch,
            })
        self.total_params = sum(m["params"] for m in self.member_info)
        if max_params is not None and self.total_params >= max_params:
            raise ValueError(f"model.max_params: the {len(members)} members hold {self.total_params:,} parameters, "
                             f"not under {max_params:,}")
        initial = weights if isinstance(weights, list) else [1.0] * len(nets)
        self.model = WeightedEnsemble(nets, initial, activation="sigmoid")
        self.weights_source = "given" if isinstance(weights, list) else str(weights)
        self.member_scores: list[float] | None = list(weights) if isinstance(weights, list) else None
        self._weights_ready = isinstance(weights, list)
        self._init_evaluation(loss, threshold, tta)

    @property
    def member_weights(self) -> list[float]:
        return [float(w) for w in self.model.weights]

    # -- weights ---------------------------------------------------------------------------------
    @torch.no_grad()
    def measure_member_dice(self, loader: Any) -> list[float]:
        """Each member's pooled Dice (the `val/dice` of training) over `loader` (no TTA)."""
        metrics = [SegmentationMetrics(threshold=self.threshold, validate_args=False).to(self.device)
                   for _ in self.model.members]
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in loader:
                x = batch["image"].to(self.device)
                y = batch["mask"].to(self.device)
                for member, metric in zip(self.model.members, metrics):
                    metric.update(torch.sigmoid(member(x).float()), y)
        finally:
            self.model.train(was_training)
        return [float(m.compute()["dice"]) for m in metrics]

    def _ensure_weights(self) -> None:
        if not self._weights_ready:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None or not callable(getattr(datamodule, "val_dataloader", None)):
                raise ValueError("model.weights=val_dice needs a DataModule with a validation subset; "
                                 "or give model.weights as a list of scores")
            self._check_preprocessing(datamodule)
            self.member_scores = self.measure_member_dice(datamodule.val_dataloader())
            self.model.set_weights(self.member_scores)
            self._weights_ready = True
        self._write_report()

    def _check_preprocessing(self, datamodule: Any) -> None:
        from lesion_lightning.inference import normalisation_info

        augment = getattr(datamodule, "augment", None)
        if augment is None:
            return
        for info in self.member_info:
            if normalisation_info(info["augment"]) != normalisation_info(augment):
                raise ValueError(
                    f"model.members: {info['member']} was trained with the {info['augment']!r} input normalisation, "
                    f"but data.augment={augment!r} normalises differently; evaluate the ensemble with the members' "
                    "preset")

    def _write_report(self) -> None:
        trainer = self.trainer
        if trainer is None or not trainer.is_global_zero:
            return
        import json
        from pathlib import Path

        report = {
            "weights_source": self.weights_source,
            "total_params": self.total_params,
            "tta": self.tta,
            "members": [
                {**info, "score": None if self.member_scores is None else self.member_scores[i],
                 "weight": self.member_weights[i]}
                for i, info in enumerate(self.member_info)
            ],
        }
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "ensemble.json").write_text(json.dumps(report, indent=2) + "\n")

    def on_validation_start(self) -> None:
        self._ensure_weights()

    def on_test_start(self) -> None:
        self._ensure_weights()

    def on_predict_start(self) -> None:
        self._ensure_weights()

    def on_fit_start(self) -> None:
        raise ValueError("EnsembleTask evaluates trained members (validate/test/predict); fit each member with its "
                         "own preset instead")

    def configure_optimizers(self) -> Any:
        raise ValueError("EnsembleTask cannot be trained: fit each member with its own preset, then test the ensemble")

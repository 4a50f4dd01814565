"""EnsembleTask: trained runs evaluated as one model (MedLiteNet's performance-weighted ensemble).

It shares the evaluation of `SegmentationTask` (loss, metrics, TTA, run folder) through
`LesionSegmentationModule`, but has no trainable model of its own: `fit` is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lesion_lightning.inference import load_task, normalisation_info
from lesion_lightning.metrics import SegmentationMetrics
from lesion_lightning.models.ensemble import WeightedEnsemble, weights_from_scores
from lesion_lightning.models.lesion_head import LesionLogit
from lesion_lightning.training.task import LesionSegmentationModule


ENSEMBLE_WEIGHTS = ("val_dice",)


class EnsembleTask(LesionSegmentationModule):
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
        super().__init__()
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
                "augment": loaded.preprocessing.transform_set, "epoch": loaded.epoch,
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
        augment = getattr(datamodule, "augment", None)
        if augment is None:
            return
        for info in self.member_info:
            if normalisation_info(info["augment"]) != normalisation_info(augment):
                raise ValueError(
                    f"model.members: {info['member']} was trained with the {info['augment']!r} input normalisation, "
                    f"but data.augment={augment!r} normalises differently; evaluate the ensemble with the members' "
                    "transform set")

    def _write_report(self) -> None:
        trainer = self.trainer
        if trainer is None or not trainer.is_global_zero:
            return
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

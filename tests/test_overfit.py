"""A small model must be able to overfit a handful of real images: the whole training path
(reader -> cache -> transform -> model -> loss -> optimiser -> metrics) learns."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.training import SegmentationTask

MAX_STEPS = 400
CHECK_EVERY = 20
TARGET_DICE = 0.9


def _dice_on(task: SegmentationTask, loader: DataLoader) -> float:
    """Pooled Dice of the task's own metric code on `loader`, in eval mode."""
    metric = task.metrics["test_metrics"]
    metric.reset()
    was_training = task.training
    task.eval()
    with torch.no_grad():
        for batch in loader:
            metric.update(task.predict_probs(task(batch["image"])), batch["mask"], ids=batch["id"])
    task.train(was_training)
    dice = float(metric.compute()["dice"])
    metric.reset()
    return dice


class StopWhenOverfit(pl.Callback):
    def __init__(self, loader: DataLoader) -> None:
        self.loader, self.history = loader, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % CHECK_EVERY == 0:
            self.history.append((trainer.global_step, _dice_on(pl_module, self.loader)))
            trainer.should_stop = self.history[-1][1] > TARGET_DICE


def test_small_unet_overfits_four_real_images(tmp_path, ham10000_root):
    pl.seed_everything(0, workers=True)
    dm = LesionDataModule(dataset="ham10000", root=str(ham10000_root), split="80-10-10", image_size=48,
                          batch_size=4, num_workers=0, augment="none", cache=str(tmp_path / "cache"))
    dm.setup("fit")
    loader = DataLoader(Subset(dm.datasets["train"], range(4)), batch_size=4, shuffle=False)
    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 8}, loss="bce_dice", optimizer="adam",
                            lr=1e-2)
    assert _dice_on(task, loader) < TARGET_DICE  # untrained: the target is not met by chance
    stopper = StopWhenOverfit(loader)
    trainer = pl.Trainer(max_steps=MAX_STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[stopper])
    trainer.fit(task, train_dataloaders=loader)
    final = _dice_on(task, loader)
    assert final > TARGET_DICE, f"pooled Dice {final:.3f} after {trainer.global_step} steps (history {stopper.history})"

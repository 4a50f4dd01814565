"""Callbacks (complexity, prediction grid, training curves, progressive resizing) and drawing helpers,
on a 1-layer conv LightningModule and a fake DataModule that follow SegmentationTask's contracts."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lesion_lightning.callbacks import (
    ComplexityCallback,
    PredictionGridCallback,
    ProgressiveResizeCallback,
    TrainingCurvesCallback,
)
from lesion_lightning.utils.visualize import GT_COLOR, PRED_COLOR, make_grid, overlay_contours, to_display_uint8


# -- tiny task and data following the SegmentationTask / DataModule contracts -----------------------
class SquaresDataset(Dataset):
    """A centred square lesion on noise; `size` may change between epochs (progressive resizing)."""

    def __init__(self, n: int, size: tuple[int, int]) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        h, w = self.size
        mask = torch.zeros(1, h, w)
        mask[:, h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = 1
        image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(i)) + 2 * mask - 1
        return {"image": image, "mask": mask, "id": f"img{i}"}


class FakeDataModule(pl.LightningDataModule):
    def __init__(self, image_size: int = 16, num_workers: int = 0, persistent_workers: bool = False,
                 n_train: int = 8, n_val: int = 4, batch_size: int = 4, val_batch_size: int = 2) -> None:
        super().__init__()
        self.image_size = (image_size, image_size)
        self.train_image_size = self.image_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.n_train, self.n_val, self.batch_size, self.val_batch_size = n_train, n_val, batch_size, val_batch_size
        self.train_ds: SquaresDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        self.train_ds = SquaresDataset(self.n_train, self.train_image_size)
        self.val_ds = SquaresDataset(self.n_val, self.image_size)

    def set_train_image_size(self, size) -> None:
        self.train_image_size = (size, size) if isinstance(size, int) else tuple(size)
        if self.train_ds is not None:
            self.train_ds.size = self.train_image_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_ds, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.persistent_workers and self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_ds, batch_size=self.val_batch_size, num_workers=0)


class TinyTask(pl.LightningModule):
    """1-layer conv 'segmenter'. Logs `<stage>/loss` (train: per step and epoch), `<stage>/dice`,
    `<stage>/iou` per epoch, records the batch sizes it saw and its own epoch values to compare with."""

    def __init__(self, lr: float = 0.05, val_pred_shift: int | None = None, fail_at_epoch: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Conv2d(3, 1, 3, padding=1)
        self.num_classes = 1
        self.threshold = 0.5
        self.seen: dict[tuple[str, int], set] = defaultdict(set)
        self.epoch_values: dict[tuple[str, int], dict[str, float]] = {}
        self._acc: dict[str, list[float]] = {}

    def predict_probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def _step(self, batch: dict, stage: str) -> dict:
        if stage == "train" and self.hparams.fail_at_epoch == self.current_epoch:
            raise RuntimeError("planned failure")
        x, y = batch["image"], batch["mask"]
        self.seen[(stage, self.current_epoch)].add(tuple(x.shape[-2:]))
        logits = self.model(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        probs = self.predict_probs(logits).detach()
        if stage == "val" and self.hparams.val_pred_shift is not None:  # a known prediction to draw
            probs = torch.roll(y, shifts=self.hparams.val_pred_shift, dims=-1)
        pred = (probs >= 0.5).float()
        acc = self._acc.setdefault(stage, [0.0, 0.0, 0.0, 0.0, 0.0])
        b = x.shape[0]
        for i, v in enumerate(((pred * y).sum(), pred.sum(), y.sum(), loss.detach() * b, b)):
            acc[i] += float(v)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=b)
        return {"loss": loss, "probs": probs}

    def _epoch_end(self, stage: str) -> None:
        inter, p, g, loss_sum, n = self._acc.pop(stage)
        values = {"dice": 2 * inter / (p + g) if p + g else 1.0,
                  "iou": inter / (p + g - inter) if p + g - inter else 1.0, "loss": loss_sum / n}
        self.log(f"{stage}/dice", values["dice"])
        self.log(f"{stage}/iou", values["iou"])
        if not self.trainer.sanity_checking:
            self.epoch_values[(stage, self.current_epoch)] = values

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _trainer(tmp_path, callbacks, max_epochs=1, **kwargs) -> pl.Trainer:
    opts = dict(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
                num_sanity_val_steps=1)
    opts.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **opts)


def _conv_flops(h: int, w: int) -> int:
    return 2 * h * w * 1 * 3 * 3 * 3  # 2 FLOPs per MAC, 1 output channel, 3 inputs, 3x3 kernel


# -- drawing helpers ------------------------------------------------------------------------------
def test_overlay_contours_colours_and_errors():
    img = np.full((32, 32, 3), 100, np.uint8)
    gt = np.zeros((32, 32), np.uint8)
    gt[4:12, 4:12] = 1
    pred = np.zeros((32, 32), np.float32)
    pred[20:28, 18:30] = 0.9  # a float mask is thresholded at 0.5
    out = overlay_contours(img, pred, gt)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert (img == 100).all()  # input untouched
    assert tuple(out[4, 8]) == GT_COLOR and tuple(out[8, 4]) == GT_COLOR and tuple(out[11, 8]) == GT_COLOR
    assert tuple(out[20, 24]) == PRED_COLOR and tuple(out[24, 29]) == PRED_COLOR
    assert tuple(out[8, 8]) == (100, 100, 100) and tuple(out[24, 24]) == (100, 100, 100)  # interiors
    assert tuple(out[0, 0]) == (100, 100, 100)
    # Only contours coloured: each square's outline is its perimeter in pixels.
    assert (out == np.array(GT_COLOR, np.uint8)).all(-1).sum() == 4 * 8 - 4
    assert (out == np.array(PRED_COLOR, np.uint8)).all(-1).sum() == 2 * (8 + 12) - 4
    # Where both outlines coincide the prediction stays visible.
    both = overlay_contours(img, gt, gt)
    assert (both == np.array(GT_COLOR, np.uint8)).all(-1).sum() == 0
    assert np.array_equal(overlay_contours(img, None, None), img)
    with pytest.raises(ValueError, match="prediction mask has shape"):
        overlay_contours(img, np.zeros((16, 16)), None)
    with pytest.raises(ValueError, match="uint8"):
        overlay_contours(img.astype(np.float32), gt, gt)


def test_make_grid_and_display_rescale():
    tiles = [np.full((10, 12, 3), i * 40, np.uint8) for i in range(5)]
    grid = make_grid(tiles, ncols=3, pad=2)
    assert grid.shape == (2 * 10 + 3 * 2, 3 * 12 + 4 * 2, 3)
    assert (grid[2:12, 2:14] == 0).all() and (grid[14:24, 16:28] == 160).all()
    assert (grid[14:24, 30:42] == 255).all()  # empty sixth cell stays padding
    with pytest.raises(ValueError, match="no images"):
        make_grid([])
    t = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]]] * 3)
    disp = to_display_uint8(t)
    assert disp.shape == (2, 2, 3) and disp.dtype == np.uint8
    assert disp[0, 0, 0] == 0 and disp[1, 1, 0] == 255 and disp[0, 1, 0] == round(2 / 4 * 255)


# -- ComplexityCallback -----------------------------------------------------------------------------
def test_complexity_callback_json_and_logger(tmp_path):
    cb = ComplexityCallback(input_sizes=[16, 32])
    logger = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    trainer = _trainer(tmp_path, [cb], logger=logger, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(TinyTask(), datamodule=FakeDataModule())
    data = json.loads((tmp_path / "complexity.json").read_text())
    n_params = 3 * 3 * 3 + 1
    assert data["params"] == n_params and data["trainable_params"] == n_params
    assert data["memory_mb"] == pytest.approx(n_params * 4 / 1024**2)
    assert [s["input_size"] for s in data["sizes"]] == [[3, 16, 16], [3, 32, 32]]
    assert data["sizes"][0]["flops"] == _conv_flops(16, 16) and data["sizes"][0]["macs"] == _conv_flops(16, 16) // 2
    assert data["sizes"][1]["flops"] == _conv_flops(32, 32)
    hparams = (tmp_path / "csv" / "hparams.yaml").read_text()
    assert f"complexity/params: {n_params}" in hparams
    assert f"complexity/flops: {_conv_flops(16, 16)}" in hparams
    assert f"complexity/flops_32x32: {_conv_flops(32, 32)}" in hparams


def test_complexity_callback_defaults_to_datamodule_size(tmp_path):
    cb = ComplexityCallback()
    trainer = _trainer(tmp_path, [cb], limit_train_batches=1, limit_val_batches=0)
    trainer.fit(TinyTask(), datamodule=FakeDataModule(image_size=24))
    assert cb.result["sizes"][0]["input_size"] == [3, 24, 24]
    assert cb.result["sizes"][0]["flops"] == _conv_flops(24, 24)
    with pytest.raises(ValueError, match="input_sizes"):
        ComplexityCallback(input_sizes=[0])


# -- PredictionGridCallback ---------------------------------------------------------------------------
def test_prediction_grid_png_every_n_epochs(tmp_path):
    cb = PredictionGridCallback(every_n_epochs=2, num_images=3, ncols=4)
    trainer = _trainer(tmp_path, [cb], max_epochs=4, limit_train_batches=1)
    trainer.fit(TinyTask(val_pred_shift=3), datamodule=FakeDataModule(image_size=16))
    files = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert files == ["epoch_000.png", "epoch_002.png", "epoch_003.png"]  # 0, 2 and the last epoch
    grid = np.asarray(Image.open(tmp_path / "predictions" / "epoch_002.png").convert("RGB"))
    pad, s = 2, 16
    assert grid.shape == (s + 2 * pad, 3 * s + 4 * pad, 3)  # 3 tiles in one row (ncols capped to 3)
    for k in range(3):
        tile = grid[pad:pad + s, pad + k * (s + pad): pad + k * (s + pad) + s]
        # GT square rows/cols 4..11; prediction = GT shifted right by 3 -> cols 7..14.
        assert tuple(tile[8, 4]) == GT_COLOR  # GT left edge, not covered by the prediction
        assert tuple(tile[8, 14]) == PRED_COLOR  # prediction right edge
        assert tuple(tile[4, 9]) == PRED_COLOR  # shared top edge: prediction drawn on top
        image = to_display_uint8(SquaresDataset(4, (16, 16))[k]["image"])
        assert np.array_equal(tile[8, 9], image[8, 9])  # inside both: the image itself
    with pytest.raises(ValueError, match="every_n_epochs"):
        PredictionGridCallback(every_n_epochs=0)


# -- TrainingCurvesCallback -----------------------------------------------------------------------------
def _read_history(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _assert_history_matches(rows, task, epochs, train_epochs=None):
    train_epochs = epochs if train_epochs is None else train_epochs
    assert [int(r["epoch"]) for r in rows] == list(epochs)
    for r in rows:
        e = int(r["epoch"])
        for stage in ("train", "val"):
            for m in ("loss", "dice", "iou"):
                if stage == "train" and e not in train_epochs:
                    assert r[f"{stage}/{m}"] == ""
                    continue
                assert float(r[f"{stage}/{m}"]) == pytest.approx(task.epoch_values[(stage, e)][m], rel=1e-5), \
                    (stage, m, e)


def test_training_curves_history_and_plot(tmp_path):
    cb = TrainingCurvesCallback()
    task = TinyTask()
    trainer = _trainer(tmp_path, [cb], max_epochs=3)
    trainer.fit(task, datamodule=FakeDataModule())
    rows = _read_history(tmp_path / "history.csv")
    _assert_history_matches(rows, task, range(3))
    # values differ between epochs (the model trains), so a stale read would have been caught
    assert len({r["train/loss"] for r in rows}) == 3
    png = Image.open(tmp_path / "curves.png")
    assert png.size == (1260, 360)  # 3 panels of 4.2 x 3.6 in at 100 dpi


def test_training_curves_written_when_fit_fails(tmp_path):
    task = TinyTask(fail_at_epoch=2)
    trainer = _trainer(tmp_path, [TrainingCurvesCallback()], max_epochs=4)
    with pytest.raises(RuntimeError, match="planned failure"):
        trainer.fit(task, datamodule=FakeDataModule())
    rows = _read_history(tmp_path / "history.csv")
    _assert_history_matches(rows, task, range(2))
    assert (tmp_path / "curves.png").is_file()


# -- ProgressiveResizeCallback ---------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 2])
def test_progressive_resize_changes_training_batches(tmp_path, num_workers):
    task = TinyTask()
    cb = ProgressiveResizeCallback({1: 24, 3: 32})
    trainer = _trainer(tmp_path, [cb], max_epochs=4)
    trainer.fit(task, datamodule=FakeDataModule(image_size=16, num_workers=num_workers))
    train_sizes = [task.seen[("train", e)] for e in range(4)]
    assert train_sizes == [{(16, 16)}, {(24, 24)}, {(24, 24)}, {(32, 32)}]
    assert all(task.seen[("val", e)] == {(16, 16)} for e in range(4))  # validation keeps image_size
    assert trainer.callback_metrics["train/image_size"] == 32


def test_progressive_resize_first_epoch_with_workers(tmp_path):
    # Epoch 0 differs from image_size: the iterator (and workers) exist before on_train_epoch_start.
    task = TinyTask()
    trainer = _trainer(tmp_path, [ProgressiveResizeCallback({0: 24, 1: [32, 16]})], max_epochs=2,
                       limit_val_batches=0)
    trainer.fit(task, datamodule=FakeDataModule(image_size=16, num_workers=1))
    assert [task.seen[("train", e)] for e in range(2)] == [{(24, 24)}, {(32, 16)}]


def test_progressive_resize_persistent_workers(tmp_path):
    dm = FakeDataModule(num_workers=1, persistent_workers=True)
    trainer = _trainer(tmp_path, [ProgressiveResizeCallback({1: 24})], max_epochs=2, limit_val_batches=0)
    with pytest.raises(ValueError, match="persistent_workers"):
        trainer.fit(TinyTask(), datamodule=dm)
    # With a fresh DataLoader every epoch the new workers do see the change.
    task = TinyTask()
    trainer = _trainer(tmp_path, [ProgressiveResizeCallback({1: 24})], max_epochs=2, limit_val_batches=0,
                       reload_dataloaders_every_n_epochs=1)
    trainer.fit(task, datamodule=FakeDataModule(num_workers=1, persistent_workers=True))
    assert [task.seen[("train", e)] for e in range(2)] == [{(16, 16)}, {(24, 24)}]


def test_progressive_resize_and_curves_survive_resume(tmp_path):
    schedule = {0: 16, 1: 24, 2: 32}
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    first = TinyTask()
    trainer = _trainer(tmp_path, [ProgressiveResizeCallback(schedule), TrainingCurvesCallback(), ckpt],
                       max_epochs=2, enable_checkpointing=True)
    trainer.fit(first, datamodule=FakeDataModule(num_workers=2))
    assert [first.seen[("train", e)] for e in range(2)] == [{(16, 16)}, {(24, 24)}]

    resumed = TinyTask()
    trainer = _trainer(tmp_path, [ProgressiveResizeCallback(schedule), TrainingCurvesCallback(),
                                  ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)],
                       max_epochs=4, enable_checkpointing=True)
    trainer.fit(resumed, datamodule=FakeDataModule(num_workers=2), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # The workers of the resumed epoch start before the loops are restored: the size came from the checkpoint.
    assert [resumed.seen[("train", e)] for e in (2, 3)] == [{(32, 32)}, {(32, 32)}]
    assert ("train", 0) not in resumed.seen
    # The history from before the interruption came back with the checkpoint.
    rows = _read_history(tmp_path / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    for r in rows:
        e = int(r["epoch"])
        task = first if e < 2 else resumed
        assert float(r["train/dice"]) == pytest.approx(task.epoch_values[("train", e)]["dice"], rel=1e-5)
        assert float(r["val/loss"]) == pytest.approx(task.epoch_values[("val", e)]["loss"], rel=1e-5)


def test_progressive_resize_bad_config(tmp_path):
    for bad in ({}, {-1: 32}, {0: 0}, {0: "big"}, {"x": 32}):
        with pytest.raises(ValueError, match="schedule"):
            ProgressiveResizeCallback(bad)

    class NoResize(FakeDataModule):
        set_train_image_size = None

    trainer = _trainer(tmp_path, [ProgressiveResizeCallback({1: 24})], max_epochs=1, limit_val_batches=0)
    with pytest.raises(ValueError, match="set_train_image_size"):
        trainer.fit(TinyTask(), datamodule=NoResize())

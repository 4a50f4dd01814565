"""The offline W&B record reader, on runs written by wandb itself and by Lightning's WandbLogger."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lesion_lightning.callbacks import ComplexityCallback, PredictionGridCallback
from lesion_lightning.utils.wandb_offline import (
    BLOCK_SIZE,
    WandbRecordError,
    find_offline_runs,
    iter_records,
    read_run,
)

BIG_NOTE = "".join(chr(65 + (i * 7) % 26) for i in range(70_000))  # one record over 3 blocks: first/middle/last


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """A run written by wandb in offline mode (module-scoped: wandb.init costs about a second)."""
    import wandb

    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    root = tmp_path_factory.mktemp("wandb_root")
    run = wandb.init(mode="offline", dir=str(root), project="lesion-test",
                     config={"lr": 0.01, "model": {"name": "tiny", "depth": 3}, "sizes": [256, 384]})
    losses = [1.0 / (i + 1) for i in range(5)]
    for i, loss in enumerate(losses):
        run.log({"loss": loss, "epoch": i, "flag": i % 2 == 0})
    img = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    run.log({"val/predictions": wandb.Image(img, masks={"prediction": {"mask_data": mask,
                                                                        "class_labels": {0: "bg", 1: "lesion"}}})})
    run.summary["best_dice"] = 0.875
    run.summary["complexity/params"] = 1234
    run.config.update({"note": BIG_NOTE})
    run_id = run.id
    run.finish()
    mp.undo()
    return {"root": root, "run_id": run_id, "losses": losses}


def test_read_offline_run(offline_run):
    root = offline_run["root"]
    (path,) = find_offline_runs(root)
    assert path.name == f"run-{offline_run['run_id']}.wandb" and path.parent.name.startswith("offline-run-")
    for where in (root, path, path.parent):  # a root, the record file, the run folder
        run = read_run(where)
        assert run.path == path
    assert run.run_id == offline_run["run_id"] and run.project == "lesion-test"
    assert run.finished and run.exit_code == 0 and not run.truncated
    assert run.config["lr"] == 0.01 and run.config["model"] == {"name": "tiny", "depth": 3}
    assert run.config["sizes"] == [256, 384]
    assert run.config["note"] == BIG_NOTE
    assert run.summary["best_dice"] == 0.875 and run.summary["complexity/params"] == 1234
    assert run.summary["loss"] == offline_run["losses"][-1]  # the summary keeps the last logged value
    assert run.history_of("loss") == offline_run["losses"]
    assert run.history_of("epoch") == list(range(5))
    assert run.history_of("flag") == [True, False, True, False, True]
    assert [row["_step"] for row in run.history] == list(range(6))
    (image,) = run.history_of("val/predictions")
    assert image["_type"] == "image-file" and image["width"] == 16 and image["height"] == 16
    assert image["path"] in run.files and (run.files_dir / image["path"]).is_file()
    assert (run.files_dir / image["masks"]["prediction"]["path"]).is_file()


def test_record_framing_matches_the_file(offline_run):
    # The big config record must have been split over blocks; every record parses and the file
    # is consumed to its end (a framing mistake would desynchronise and fail the CRC check).
    (path,) = find_offline_runs(offline_run["root"])
    data = path.read_bytes()
    assert len(data) > 2 * BLOCK_SIZE
    types = set()
    pos = 7
    while pos < len(data):
        left = BLOCK_SIZE - pos % BLOCK_SIZE
        if left < 7:
            pos += left
            continue
        crc, length, ctype = struct.unpack("<IHB", data[pos:pos + 7])
        assert zlib.crc32(data[pos + 6:pos + 7 + length]) == crc
        types.add(ctype)
        pos += 7 + length
    assert pos == len(data) and {1, 2, 3, 4} <= types
    kinds = [r.WhichOneof("record_type") for r in iter_records(path)]
    assert kinds[0] == "header" and kinds[-1] == "exit" and kinds.count("history") == 6


def test_corrupt_truncated_and_ambiguous(offline_run, tmp_path):
    (path,) = find_offline_runs(offline_run["root"])
    data = bytearray(path.read_bytes())

    bad = tmp_path / "bad.wandb"
    bad.write_bytes(b"NOPE" + bytes(data[4:]))
    with pytest.raises(WandbRecordError, match="not a W&B record file"):
        read_run(bad)

    flipped = bytearray(data)
    flipped[200] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(WandbRecordError, match=r"bad\.wandb: checksum mismatch"):
        read_run(bad)

    cut = tmp_path / "cut.wandb"
    cut.write_bytes(bytes(data[: BLOCK_SIZE + 100]))  # inside the multi-block config record
    with pytest.warns(UserWarning, match="ends inside a record"):
        run = read_run(cut)
    assert run.truncated and not run.finished
    assert run.history_of("loss") == offline_run["losses"] and "note" not in run.config

    # Two runs below one folder: the caller must choose.
    twin_root = tmp_path / "two"
    src = path.parent
    shutil.copytree(src, twin_root / "wandb" / src.name)
    shutil.copytree(src, twin_root / "wandb" / src.name.replace("offline-run-", "offline-run-9"))
    assert len(find_offline_runs(twin_root)) == 2
    with pytest.raises(ValueError, match="holds 2 offline W&B runs"):
        read_run(twin_root)
    with pytest.raises(FileNotFoundError, match="no offline W&B run"):
        read_run(tmp_path / "two" / "wandb" / src.name / "files")


# -- Lightning's WandbLogger ------------------------------------------------------------------------
class _Squares(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        mask = torch.zeros(1, 16, 16)
        mask[:, 4:12, 4:12] = 1
        image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) + mask
        return {"image": image, "mask": mask, "id": f"sq{i}"}


class _Data(pl.LightningDataModule):
    image_size = (16, 16)

    def train_dataloader(self):
        return DataLoader(_Squares(), batch_size=2)

    def val_dataloader(self):
        return DataLoader(_Squares(), batch_size=2)


class _Task(pl.LightningModule):
    def __init__(self, lr: float = 0.02, loss_name: str = "bce") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Conv2d(3, 1, 3, padding=1)
        self.num_classes = 1
        self.val_losses: list[float] = []
        self._sum = [0.0, 0]

    def predict_probs(self, logits):
        return torch.sigmoid(logits)

    def training_step(self, batch, batch_idx):
        loss = F.binary_cross_entropy_with_logits(self.model(batch["image"]), batch["mask"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=2)
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self.model(batch["image"])
        loss = F.binary_cross_entropy_with_logits(logits, batch["mask"])
        self.log("val/loss", loss, batch_size=2)
        self._sum[0] += float(loss) * 2
        self._sum[1] += 2
        return {"loss": loss, "probs": self.predict_probs(logits).detach()}

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_losses.append(self._sum[0] / self._sum[1])
        self._sum = [0.0, 0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def test_lightning_wandb_logger_offline_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), project="lesion-test", name="tiny-run")
    task = _Task(lr=0.02)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
                         num_sanity_val_steps=0, log_every_n_steps=1,
                         callbacks=[ComplexityCallback(), PredictionGridCallback(every_n_epochs=1, num_images=3)])
    trainer.fit(task, datamodule=_Data())
    logger.experiment.finish()

    run = read_run(tmp_path)
    assert run.finished and run.name == "tiny-run" and run.project == "lesion-test"
    assert run.config["lr"] == 0.02 and run.config["loss_name"] == "bce"  # save_hyperparameters via Lightning
    complexity = json.loads((tmp_path / "complexity.json").read_text())
    assert run.summary["complexity/params"] == complexity["params"] == 28
    assert run.summary["complexity/flops"] == complexity["sizes"][0]["flops"] == 2 * 16 * 16 * 27
    assert run.config["complexity/gmacs"] == pytest.approx(complexity["sizes"][0]["gmacs"])
    assert run.history_of("val/loss") == pytest.approx(task.val_losses)
    assert run.history_of("epoch")[-1] == 1
    grids = run.history_of("val/predictions")
    assert len(grids) == 2  # one per epoch
    for g in grids:
        assert g["_type"] == "images/separated" and g["count"] == 3
        assert g["captions"][0].startswith("sq0")
        for m in g["all_masks"]:
            assert set(m) == {"prediction", "ground_truth"}
            assert (run.files_dir / m["ground_truth"]["path"]).is_file()
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["epoch_000.png", "epoch_001.png"]

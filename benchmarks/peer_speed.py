"""Training speed against the official SCSONet code (Haoyu1Chen/SCSONet): seconds per epoch, ours / theirs.

Both train SCSONet in this process, on the same fixed subset of isic2018_128, batch size, input size
and thread count (torch.set_num_threads), with DataLoader workers 0 for both. Rounds alternate
ours / theirs, one training epoch each (no validation), after one untimed warm-up epoch each; the
medians give the ratio (< 1: ours is faster).

- Ours: the package's Python API: SegmentationTask + LesionDataModule with the recipe of
  experiments/scsonet/isic2018.yaml (model, loss, optimiser, scheduler, augment preset) and
  a Lightning Trainer (epoch timed by a callback from epoch start to epoch end).
- Theirs: imported from --peer-dir at run time, never copied here: their SCSONet model, BceDiceLoss,
  get_optimizer/get_scheduler, NPY_datasets and train transforms (configs/config_setting.py, with
  myResize set to --size) and their engine.train_one_epoch, timed around the call. Their data
  layout (DATA/train/images, DATA/train/masks) is made of symlinks to our files in a temporary
  folder. Runtime patches, their files untouched: Tensor.cuda is the identity on CPU (their loop
  calls .cuda()), their DataParallel wrapper is left out (a pass-through on one device), and
  pin_memory is off (no GPU to pin for).

    git clone https://github.com/Haoyu1Chen/SCSONet /path/to/SCSONet
    .venv/bin/python benchmarks/peer_speed.py --peer-dir /path/to/SCSONet   # or SCSONET_PEER_DIR=...
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from isic_subset import DEFAULT_ROOT, REPO, data_missing_reason, pair_paths, subset_ids, write_split_manifest

PEER_FILES = ("engine.py", "utils.py", "models/scsonet.py", "dataset/npy_datasets.py", "configs/config_setting.py")
CLONE = "git clone https://github.com/Haoyu1Chen/SCSONet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-dir", type=Path, default=os.environ.get("SCSONET_PEER_DIR"),
                   help=f"checkout of the official code ({CLONE}); env SCSONET_PEER_DIR")
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT, help="isic2018_128 (env ISIC2018_128_ROOT)")
    p.add_argument("--train-images", type=int, default=200, help="first N sorted training ids")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both (1: steady on a shared CPU)")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs of each, alternating")
    args = p.parse_args(argv)
    if args.peer_dir is None:
        p.exit(2, f"error: --peer-dir (or SCSONET_PEER_DIR) is required: a checkout of the official code ({CLONE})\n")
    missing = [f for f in PEER_FILES if not (args.peer_dir / f).is_file()]
    if missing:
        p.exit(2, f"error: --peer-dir {args.peer_dir}: not a checkout of Haoyu1Chen/SCSONet "
                  f"(no {missing[0]}); get it with: {CLONE}\n")
    return args


def peer_data_folder(root: Path, ids: list[str], folder: Path) -> str:
    """Their layout, as symlinks; image and mask share a file name so their two os.listdir calls pair up."""
    for kind in ("images", "masks"):
        (folder / "train" / kind).mkdir(parents=True)
    for i in ids:
        image, mask = pair_paths(root, "train", i)
        (folder / "train" / "images" / f"{i}.jpg").symlink_to(image)
        (folder / "train" / "masks" / f"{i}.jpg").symlink_to(mask)  # PIL reads the PNG by content
    return f"{folder}/"  # their code concatenates path + 'train/images/'


class PeerTrainer:
    """Their model, loss, optimiser, scheduler, dataset and train_one_epoch, imported from peer_dir."""

    def __init__(self, peer_dir: Path, data_path: str, size: int, batch_size: int) -> None:
        import torch
        sys.path.insert(0, str(peer_dir.resolve()))
        with contextlib.redirect_stdout(io.StringIO()):
            import engine
            from configs.config_setting import setting_config as config
            from dataset.npy_datasets import NPY_datasets
            from models.scsonet import SCSONet
            from utils import get_optimizer, get_scheduler, myResize
        config.train_transformer.transforms[-1] = myResize(size, size)
        dataset = NPY_datasets(data_path, config, train=True)
        if any(Path(img).name != Path(msk).name for img, msk in dataset.data):
            raise SystemExit("error: their loader paired images and masks of different ids (os.listdir order)")
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
        c = config.model_config
        self.model = SCSONet(num_classes=c["num_classes"], input_channels=c["input_channels"], c_list=c["c_list"],
                             split_att=c["split_att"], bridge=c["bridge"])
        self.optimizer = get_optimizer(config, self.model)
        self.scheduler = get_scheduler(config, self.optimizer)
        self.config, self.engine, self.epoch = config, engine, 0
        self.logger = logging.getLogger("scsonet_peer")
        self.logger.addHandler(logging.NullHandler())
        self.logger.propagate = False

    def epoch_seconds(self) -> float:
        import torch
        self.epoch += 1
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda t, *a, **k: t  # their loop moves batches with .cuda(); CPU here
        try:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                self.engine.train_one_epoch(self.loader, self.model, self.config.criterion, self.optimizer,
                                            self.scheduler, self.epoch, self.logger, self.config)
            return time.perf_counter() - start
        finally:
            torch.Tensor.cuda = cuda


class OurTrainer:
    """SCSONet with the isic2018 recipe through SegmentationTask + LesionDataModule and a Lightning Trainer."""

    def __init__(self, data_root: Path, manifest: Path, size: int, batch_size: int) -> None:
        import yaml

        from lesion_lightning.data.datamodule import LesionDataModule
        from lesion_lightning.training import SegmentationTask
        recipe = yaml.safe_load((REPO / "experiments" / "scsonet" / "isic2018.yaml").read_text())
        self.task = SegmentationTask(**recipe["model"]["init_args"])
        data = {**recipe["data"], "root": str(data_root), "split": str(manifest), "image_size": size,
                "batch_size": batch_size, "num_workers": 0}
        self.datamodule = LesionDataModule(**data)

    def epoch_seconds(self) -> float:
        import pytorch_lightning as pl

        class EpochTimer(pl.Callback):
            def on_train_epoch_start(self, trainer, module):
                self.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                self.seconds = time.perf_counter() - self.start

        timer = EpochTimer()
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, limit_val_batches=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, callbacks=[timer])
        trainer.fit(self.task, datamodule=self.datamodule)
        return timer.seconds


def compare(ours: OurTrainer, theirs: PeerTrainer, rounds: int) -> tuple[list[float], list[float]]:
    ours.epoch_seconds(), theirs.epoch_seconds()  # warm-up: our decode cache, allocator, first-call costs
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        times[0].append(ours.epoch_seconds())
        times[1].append(theirs.epoch_seconds())
        print(f"  round {r + 1}: ours {times[0][-1]:.2f} s, theirs {times[1][-1]:.2f} s", flush=True)
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = data_missing_reason(args.data_root)
    if reason:
        print(f"peer_speed: SKIPPED: {reason}")
        return 0
    import torch
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="peer_speed_") as tmp:
        subsets = {"train": subset_ids(args.data_root, args.train_images)["train"]}
        manifest = write_split_manifest(subsets, Path(tmp) / "split.json")
        theirs = PeerTrainer(args.peer_dir, peer_data_folder(args.data_root, subsets["train"], Path(tmp) / "peer"),
                             args.size, args.batch_size)
        ours = OurTrainer(args.data_root, manifest, args.size, args.batch_size)
        print(f"peer_speed: SCSONet, {args.train_images} ISIC 2018 training images at {args.size} px, "
              f"batch {args.batch_size}, {args.threads} threads, {args.rounds} alternating rounds", flush=True)
        ours_s, theirs_s = compare(ours, theirs, args.rounds)
    mine, peer = statistics.median(ours_s), statistics.median(theirs_s)
    print(f"peer_speed: s/epoch ours {mine:.2f}, official {peer:.2f}; ratio ours/theirs {mine / peer:.2f} "
          f"(median of {args.rounds}; < 1 means ours is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

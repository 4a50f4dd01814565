"""Lightning training-step throughput vs a plain PyTorch loop on the same model, data and batch.

Prints steps/s of both, measured alternately in one run (median of repeats), and their ratio
(target: Lightning / plain >= 0.97). Also shows SegmentationTask (our task, with its metrics and
logging) so the cost of metrics is visible separately from the framework's.

    .venv/bin/python benchmarks/lightning_overhead.py [--model simple_unet] [--size 128] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lesion_lightning.losses import build_loss
from lesion_lightning.models import create_model
from lesion_lightning.training import SegmentationTask


class RandomSegmentation(Dataset):
    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.masks = (torch.rand(n, 1, size, size, generator=g) > 0.5).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "mask": self.masks[i], "id": str(i)}


class MinimalTask(pl.LightningModule):
    """The same work as the plain loop: forward, loss, backward, step — nothing else."""

    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.model, self.loss, self.lr = model, loss, lr

    def training_step(self, batch, batch_idx):
        return self.loss(self.model(batch["image"]), batch["mask"])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def plain_loop(model_name: str, loader: DataLoader, epochs: int) -> float:
    torch.manual_seed(0)
    model = create_model(model_name)
    loss_fn = build_loss("bce_dice")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    steps = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"]), batch["mask"])
            loss.backward()
            opt.step()
            steps += 1
    return steps / (time.perf_counter() - start)


def lightning_loop(module: pl.LightningModule, loader: DataLoader, epochs: int) -> float:
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return trainer.global_step / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simple_unet")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: with 2 threads on a 2-core machine, whatever else runs "
                             "there swamps the measured difference)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    loader = DataLoader(RandomSegmentation(args.batch * args.steps, args.size), batch_size=args.batch, shuffle=False)

    results: dict[str, list[float]] = {"plain PyTorch": [], "Lightning (minimal module)": [], "SegmentationTask": []}
    plain_loop(args.model, loader, 1)  # warm-up: allocator, kernels
    for _ in range(args.repeats):
        results["plain PyTorch"].append(plain_loop(args.model, loader, 1))
        torch.manual_seed(0)
        results["Lightning (minimal module)"].append(
            lightning_loop(MinimalTask(create_model(args.model), build_loss("bce_dice"), 1e-3), loader, 1))
        torch.manual_seed(0)
        results["SegmentationTask"].append(lightning_loop(SegmentationTask(model=args.model), loader, 1))

    plain = statistics.median(results["plain PyTorch"])
    print(f"model={args.model} size={args.size} batch={args.batch} steps={args.steps} repeats={args.repeats} "
          f"threads={torch.get_num_threads()}")
    print(f"{'loop':<28} {'steps/s':>9} {'ratio vs plain':>15}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:<28} {med:>9.2f} {med / plain:>15.3f}")
    ratio = statistics.median(results["Lightning (minimal module)"]) / plain
    print(f"Lightning/plain throughput ratio: {ratio:.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()

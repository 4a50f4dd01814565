"""Shared pieces of the model tests: one intra-op thread, a seeded model, real HAM10000 batches,
BCE + Dice and a short training run on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lesion_lightning.models import create_model


def _single_thread() -> Iterator[None]:
    # These models run many tiny ops; on shared cores, intra-op threads oversubscribe and crawl
    # (OpenMP waiting made steps 3-100x slower under load). One thread is fast and steady; restored afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Import into a test module to run the whole module on one intra-op thread."""
    yield from _single_thread()


@pytest.fixture(autouse=True)
def one_thread_per_test() -> Iterator[None]:
    """Import into a test module to run each test (not its module-scoped fixtures) on one intra-op thread."""
    yield from _single_thread()


def seeded_model(name: str) -> nn.Module:
    """The registry model `name`, built after `torch.manual_seed(0)`, in eval mode."""
    torch.manual_seed(0)
    return create_model(name).eval()


def ham_batch(root: Path, n: int, size: int, *, per_image_minmax: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` HAM10000 images (B, 3, size, size) and their masks (B, 1, size, size) as 0/1 floats.

    Images are scaled per image to [0, 1] by min-max (as the MALUNet code base), or divided by 255.
    """
    xs, ys = [], []
    for path in sorted((root / "HAM10000_images_part_1").glob("*.jpg"))[:n]:
        img = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
        img = (img - img.min()) / max(img.max() - img.min(), 1e-6) if per_image_minmax else img / 255
        mask_path = root / "HAM10000_segmentations_lesion_tschandl" / f"{path.stem}_segmentation.png"
        mask = np.asarray(Image.open(mask_path).convert("L").resize((size, size), Image.NEAREST)) > 127
        xs.append(torch.from_numpy(img).permute(2, 0, 1))
        ys.append(torch.from_numpy(mask).float()[None])
    return torch.stack(xs), torch.stack(ys)


def bce_dice(logits: torch.Tensor, y: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """BCE + 1 - Dice (smooth 1), Dice over the whole batch or per image then averaged (the MALUNet code base)."""
    prob, y_flat = torch.sigmoid(logits).flatten(1), y.flatten(1)
    dims = 1 if per_image else (0, 1)
    dice = (2 * (prob * y_flat).sum(dims) + 1) / (prob.sum(dims) + y_flat.sum(dims) + 1)
    return F.binary_cross_entropy_with_logits(logits, y) + 1 - dice.mean()


def training_losses(net: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int = 15) -> list[float]:
    """The loss of each of `steps` AdamW steps (lr 1e-3, weight decay 1e-2) on `loss_fn()`."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# thop 0.1.1's per-module rules (the counter the lightweight-model papers print as "GFLOPs"): convolutions
# and transposed convolutions cost output elements x C_in/groups x kernel area, an affine BatchNorm 4 ops per
# element, a bilinear nn.Upsample 11 per output element; ReLU, max-pooling and dropout cost nothing.
THOP_FREE = (nn.ReLU, nn.MaxPool2d, nn.Dropout, nn.Identity)


def _thop_ops(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return y.numel() * (x.shape[1] // module.groups) * module.weight[0, 0].numel()
    if isinstance(module, nn.BatchNorm2d):
        return 4 * x.numel() if module.affine else 2 * x.numel()
    if isinstance(module, nn.Upsample) and module.mode == "bilinear":
        return 11 * y.numel()
    if isinstance(module, THOP_FREE):
        return 0
    raise TypeError(f"no thop rule here for {type(module).__name__}")


def thop_style_macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    """The MACs thop reports for `model` at batch 1 (leaf modules only; a module type without a rule raises)."""
    total = [0]
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + _thop_ops(m, i[0], o)))
               for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *size))
    finally:
        for h in handles:
            h.remove()
    return total[0]

"""`LesionDataset`: records -> (image, mask) samples, through the decode-once cache and a transform."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import os

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from lesion_lightning.data.cache import DecodeCache, load_pair
from lesion_lightning.data.records import SampleRecord

__all__ = ["LesionDataset", "seed_worker"]


class LesionDataset(Dataset):
    """Samples of `records` as dicts ``{"image", "mask", "id"}``.

    Without `transform`: `image` (H, W, 3) uint8 RGB and `mask` (H, W) uint8 in {0, 1} numpy arrays.
    With an albumentations `transform` (called as ``transform(image=, mask=)``, returning tensors, see
    `lesion_lightning.data.transforms.build_transforms`): `image` float32 (3, H, W) and `mask`
    float32 (1, H, W). Pixels come from `cache` when given (decoded and resized once), else are
    decoded and resized to `image_size` = (H, W) (None: original size) on every access.

    `with_mask`: whether items carry a mask; default True when every record has one. Records without
    a mask (predict-only folders) need ``with_mask=False``.
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        cache: DecodeCache | None = None,
        image_size: tuple[int, int] | None = None,
        with_mask: bool | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.cache = cache
        self.image_size = tuple(image_size) if image_size is not None else (cache.image_size if cache else None)
        all_masks = all(r.mask_path is not None for r in self.records)
        self.with_mask = all_masks if with_mask is None else with_mask
        if self.with_mask and not all_masks:
            missing = next(r for r in self.records if r.mask_path is None)
            raise ValueError(f"{missing.image_path}: record {missing.id} has no mask; use with_mask=False to predict")

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded (and resized) arrays of record `index`, before any transform."""
        record = self.records[index]
        mask_path = record.mask_path if self.with_mask else None
        if self.cache is not None:
            return self.cache.load_pair(record.image_path, mask_path, record.mask_encoding)
        return load_pair(record.image_path, mask_path, self.image_size, mask_encoding=record.mask_encoding)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image, mask = self.load(index)
        if self.transform is None:
            item: dict[str, Any] = {"image": image, "id": record.id}
            if mask is not None:
                item["mask"] = mask
            return item
        out = self.transform(image=image, mask=mask) if mask is not None else self.transform(image=image)
        item = {"image": _as_float_tensor(out["image"]), "id": record.id}
        if mask is not None:
            m = _as_float_tensor(out["mask"])
            item["mask"] = m.unsqueeze(0) if m.ndim == 2 else m
        return item


def _as_float_tensor(x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.float()


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: Lightning's worker seeding (under seed_everything(workers=True)),
    then a per-worker reseed of the dataset's albumentations pipeline, whose random state every worker
    would otherwise copy from the main process and replay identically."""
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(int(torch.initial_seed() % 2**32))

"""Samplers whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSeededRandomSampler(Sampler[int]):
    """Random permutation drawn from `seed + epoch`.

    Lightning calls `set_epoch` on samplers that have it before each epoch (DistributedSampler
    works the same way), so the order of epoch k is the same whether the run was interrupted or not;
    torch's RandomSampler instead draws from the global RNG, whose state a checkpoint does not hold.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples

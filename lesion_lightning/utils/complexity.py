"""Parameter, MAC and FLOP counts (torch.utils.flop_counter; one MAC = 2 FLOPs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Complexity:
    params: int
    trainable_params: int
    flops: int
    macs: int
    input_size: tuple[int, int, int]
    memory_mb: float  # float32 parameters x 4 bytes / 1024^2 (LANET eq. 4)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["gflops"] = self.flops / 1e9
        d["gmacs"] = self.macs / 1e9
        return d


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int, int], batch_size: int = 1) -> int:
    """FLOPs of one forward pass at (C, H, W), counted by torch.utils.flop_counter (eval mode, CPU copy)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = torch.zeros(batch_size, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_complexity(model: nn.Module, input_size: tuple[int, int, int]) -> Complexity:
    params = count_params(model)
    flops = count_flops(model, input_size)
    return Complexity(
        params=params,
        trainable_params=count_params(model, trainable_only=True),
        flops=flops,
        macs=flops // 2,
        input_size=tuple(input_size),
        memory_mb=params * 4 / 1024**2,
    )

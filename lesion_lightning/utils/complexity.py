"""The one model cost report: parameters, MACs, FLOPs, memory, layers and (optionally) latency.

`measure_complexity` is what `lesion-lightning models`, `complexity`, `bench`, the table runner (LANET
Table 4, SLSNet Table 5), the complexity callback and export's model card all report. FLOPs are counted by
torch.utils.flop_counter for one forward pass of a batch-1 input (one MAC = 2 FLOPs); memory is float32
parameters x 4 bytes / 1024^2 (LANET eq. 4); layers are leaf modules; latency follows
`lesion_lightning.utils.latency` (median of timed forward passes after warm-up ones).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from lesion_lightning.utils.latency import LatencyResult


@dataclass(frozen=True)
class LatencySettings:
    """How latency is timed (see `lesion_lightning.utils.latency.measure_latency`)."""

    batch: int = 1
    device: str = "cpu"
    backend: str = "eager"
    repeats: int = 20
    warmup: int = 5


@dataclass
class Complexity:
    """A model's cost at one input size."""

    params: int
    trainable_params: int
    flops: int
    macs: int
    input_size: tuple[int, int, int]
    memory_mb: float  # float32 parameters x 4 bytes / 1024^2 (LANET eq. 4)
    layers: int = 0  # leaf modules
    latency: LatencyResult | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["gflops"] = self.flops / 1e9
        d["gmacs"] = self.macs / 1e9
        d["latency"] = None if self.latency is None else self.latency.as_dict()
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


def measure_complexity(model: nn.Module, input_size: tuple[int, int, int],
                       latency: LatencySettings | None = None) -> Complexity:
    """The cost report of `model` at (C, H, W); with `latency`, also timed (the model is left in eval mode)."""
    params = count_params(model)
    flops = count_flops(model, input_size)
    timed = None
    if latency is not None:
        from lesion_lightning.utils.latency import measure_latency

        timed = measure_latency(model, tuple(input_size), batch=latency.batch, device=latency.device,
                                backend=latency.backend, repeats=latency.repeats, warmup=latency.warmup)
    return Complexity(
        params=params,
        trainable_params=count_params(model, trainable_only=True),
        flops=flops,
        macs=flops // 2,
        input_size=tuple(input_size),
        memory_mb=params * 4 / 1024**2,
        layers=sum(1 for m in model.modules() if not list(m.children())),
        latency=timed,
    )


def measure_registered(name: str, size: tuple[int, int] | None = None, model_kwargs: dict[str, Any] | None = None,
                       latency: LatencySettings | None = None) -> Complexity:
    """`measure_complexity` of a registered model built with `model_kwargs`, at `size` (H, W) (default: its
    paper input size) with its paper input channels."""
    from lesion_lightning.models import create_model, get_model_spec

    channels, h, w = get_model_spec(name).input_size
    model = create_model(name, **(model_kwargs or {})).eval()
    with torch.no_grad():
        return measure_complexity(model, (channels, *(size or (h, w))), latency)

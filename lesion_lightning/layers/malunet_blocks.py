"""Blocks of MALUNet (Ruan et al., BIBM 2022): dilated gated attention and external attention.

The spatial-channel attention bridge of the same paper is in `sc_bridge.py`; the U-shape in
`light_unet.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DepthwiseGNConv(nn.Module):
    """Depthwise kxk conv -> GroupNorm(4) -> pointwise conv (both convs with bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=in_channels,
        )
        self.norm = nn.GroupNorm(4, in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.norm(self.depthwise(x)))


class GatedAttentionUnit(nn.Module):
    """out = GELU(DW3(sigmoid(DW_k(x)) * GELU(DW_{k+2}(x)))) + conv1x1(x), DW = `DepthwiseGNConv`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.gate = DepthwiseGNConv(in_channels, in_channels, kernel_size)
        self.value = DepthwiseGNConv(in_channels, in_channels, kernel_size + 2)
        self.out = DepthwiseGNConv(in_channels, out_channels, 3)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = torch.sigmoid(self.gate(x)) * F.gelu(self.value(x))
        return F.gelu(self.out(gated)) + self.shortcut(x)


class DilatedGatedAttention(nn.Module):
    """MALUNet's DGA: four channel quarters through depthwise 3x3 convs at dilations 7, 5, 2, 1,
    then GroupNorm(4) -> 1x1 conv -> GELU, then a gated attention unit to `out_channels`."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, dilations: Sequence[int] = (7, 5, 2, 1)
    ) -> None:
        super().__init__()
        if in_channels % len(dilations):
            raise ValueError(
                f"DilatedGatedAttention: {in_channels} channels do not split into {len(dilations)} branches"
            )
        q = in_channels // len(dilations)
        self.branches = nn.ModuleList(
            nn.Conv2d(q, q, kernel_size, padding=d * (kernel_size - 1) // 2, dilation=d, groups=q) for d in dilations
        )
        self.norm = nn.GroupNorm(4, in_channels)
        self.fuse = nn.Conv2d(in_channels, in_channels, 1)
        self.gau = GatedAttentionUnit(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, len(self.branches), dim=1)
        x = torch.cat([conv(p) for conv, p in zip(self.branches, parts)], dim=1)
        return self.gau(F.gelu(self.fuse(self.norm(x))))


class ExternalAttention(nn.Module):
    """MALUNet's EA block: external attention over the H*W positions with memory units of size 4C.

    conv1x1 -> M_k (C -> 4C, 1x1 Conv1d) -> softmax over positions -> normalise over the memory
    axis -> M_v (4C -> C) -> conv1x1 -> GroupNorm(4) -> + input -> GELU. The two memories start
    as transposes of each other (then train as separate weights, see `tie_memory_init`).
    """

    def __init__(self, channels: int, memory_ratio: int = 4) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.memory_key = nn.Conv1d(channels, channels * memory_ratio, 1, bias=False)
        self.memory_value = nn.Conv1d(channels * memory_ratio, channels, 1, bias=False)
        self.proj_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = nn.GroupNorm(4, channels)
        self.tie_memory_init()

    @torch.no_grad()
    def tie_memory_init(self) -> None:
        """Set the key memory to the transpose of the value memory (call again after re-initialising).

        The official code makes M_v a transposed view of M_k's storage and then re-initialises both
        in place, so both end up holding M_v's draw; moving the model to a GPU unties them.
        """
        self.memory_key.weight.copy_(self.memory_value.weight.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attn = self.memory_key(self.proj_in(x).flatten(2))  # (B, 4C, HW)
        attn = torch.softmax(attn, dim=-1)
        attn = attn / (attn.sum(dim=1, keepdim=True) + 1e-9)
        y = self.memory_value(attn).view(b, c, h, w)
        return F.gelu(self.norm(self.proj_out(y)) + x)

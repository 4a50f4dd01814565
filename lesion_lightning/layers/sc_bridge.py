"""Spatial-channel attention bridge (SCAB) of MALUNet (Ruan et al., BIBM 2022), reused by SCSONet.

The bridge sits on the skip connections and mixes information across all five encoder stages:
one spatial-attention conv shared by every stage, and a channel attention computed jointly from
the global averages of all stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SpatialAttentionBridge(nn.Module):
    """One dilated conv (shared by all stages) on [channel mean, channel max] -> sigmoid map per stage."""

    def __init__(self, kernel_size: int = 7, dilation: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        maps = []
        for t in features:
            pooled = torch.cat([t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], dim=1)
            maps.append(torch.sigmoid(self.conv(pooled)))
        return maps


class ChannelAttentionBridge(nn.Module):
    """GAP of every stage, concatenated into one sequence -> Conv1d(k=3) -> one Linear + sigmoid per stage.

    The Conv1d lets neighbouring channels of adjacent stages interact before each stage's
    fully connected layer reads the whole sequence.
    """

    def __init__(self, channels: Sequence[int], kernel_size: int = 3) -> None:
        super().__init__()
        total = sum(channels)
        self.mix = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.heads = nn.ModuleList(nn.Linear(total, c) for c in channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        seq = torch.cat([t.mean(dim=(2, 3)) for t in features], dim=1).unsqueeze(1)  # (B, 1, sum C)
        seq = self.mix(seq)
        return [torch.sigmoid(head(seq)).transpose(1, 2).unsqueeze(-1) for head in self.heads]  # (B, C_i, 1, 1)


class SCAttentionBridge(nn.Module):
    """Spatial then channel attention on the skip features t_i (shapes unchanged).

    s = sa(t) * t;  u = s + t;  out = ca(u) * u + s  — the channel attention sees the spatially
    refined features plus their input, and the spatially refined part is added back at the end.
    """

    def __init__(self, channels: Sequence[int], spatial_kernel: int = 7, spatial_dilation: int = 3) -> None:
        super().__init__()
        self.channel_att = ChannelAttentionBridge(channels)
        self.spatial_att = SpatialAttentionBridge(spatial_kernel, spatial_dilation)
        self.channels = tuple(channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.channels):
            raise ValueError(f"SCAttentionBridge expects {len(self.channels)} feature maps, got {len(features)}")
        spatial = [a * t for a, t in zip(self.spatial_att(features), features)]
        mixed = [s + t for s, t in zip(spatial, features)]
        return [a * u + s for a, u, s in zip(self.channel_att(mixed), mixed, spatial)]

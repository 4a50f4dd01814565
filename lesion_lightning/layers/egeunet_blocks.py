"""Blocks of EGE-UNet (Ruan et al., MICCAI 2023): grouped multi-axis Hadamard product attention
(GHPA) and the group aggregation bridge (GAB).

Channel LayerNorm is timm's `LayerNorm2d` (eps 1e-6), numerically the ConvNeXt-style norm the
official code writes out by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn


def _resize(t: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=True)


class HadamardAxisAttention(nn.Module):
    """GHPA: LayerNorm, then four channel quarters:

    - (H, W) plane, (C, H) plane and (C, W) plane: the quarter is multiplied elementwise by a
      learnable map (initialised to ones, stored at `base_size` and bilinearly resized to the input)
      passed through a small depthwise + pointwise conv stack;
    - the last quarter goes through 1x1 conv -> GELU -> depthwise 3x3.

    Then LayerNorm -> depthwise 3x3 -> GELU -> 1x1 to `out_channels`.
    """

    def __init__(self, in_channels: int, out_channels: int, base_size: tuple[int, int] = (8, 8)) -> None:
        super().__init__()
        if in_channels % 4:
            raise ValueError(f"HadamardAxisAttention: in_channels={in_channels} must be divisible by 4")
        q = in_channels // 4
        bx, by = base_size
        self.map_hw = nn.Parameter(torch.ones(1, q, bx, by))
        self.conv_hw = nn.Sequential(nn.Conv2d(q, q, 3, padding=1, groups=q), nn.GELU(), nn.Conv2d(q, q, 1))
        self.map_ch = nn.Parameter(torch.ones(1, 1, q, bx))
        self.conv_ch = nn.Sequential(nn.Conv1d(q, q, 3, padding=1, groups=q), nn.GELU(), nn.Conv1d(q, q, 1))
        self.map_cw = nn.Parameter(torch.ones(1, 1, q, by))
        self.conv_cw = nn.Sequential(nn.Conv1d(q, q, 3, padding=1, groups=q), nn.GELU(), nn.Conv1d(q, q, 1))
        self.local = nn.Sequential(nn.Conv2d(q, q, 1), nn.GELU(), nn.Conv2d(q, q, 3, padding=1, groups=q))
        self.norm_in = LayerNorm2d(in_channels, eps=1e-6)
        self.norm_out = LayerNorm2d(in_channels, eps=1e-6)
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            nn.GELU(),
            nn.Conv2d(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x)
        x_hw, x_ch, x_cw, x_loc = torch.chunk(x, 4, dim=1)
        q, h, w = x_hw.shape[1:]
        x_hw = x_hw * self.conv_hw(_resize(self.map_hw, (h, w)))
        # (C, H) and (C, W) maps: a Conv1d over their last axis with the quarter's channels as channels.
        att_ch = self.conv_ch(_resize(self.map_ch, (q, h))[0])  # (1, q, h)
        x_ch = x_ch * att_ch.unsqueeze(-1)
        att_cw = self.conv_cw(_resize(self.map_cw, (q, w))[0])  # (1, q, w)
        x_cw = x_cw * att_cw.unsqueeze(-2)
        x = torch.cat([x_hw, x_ch, x_cw, self.local(x_loc)], dim=1)
        return self.project(self.norm_out(x))


class GroupAggregationBridge(nn.Module):
    """GAB: fuse a deeper feature, the skip feature and a (predicted) mask, group by group.

    The deeper feature is projected to the skip's width and resized to its size; both are split in
    four channel groups, each concatenated with the 1-channel mask, normalised and passed through a
    depthwise 3x3 conv at dilation 1, 2, 5 or 7; the concatenation goes through LayerNorm and a 1x1
    conv back to the skip's width.
    """

    def __init__(self, deep_channels: int, skip_channels: int, dilations: Sequence[int] = (1, 2, 5, 7)) -> None:
        super().__init__()
        if skip_channels % 4 or len(dilations) != 4:
            raise ValueError(f"GroupAggregationBridge: skip_channels={skip_channels} must split into 4 groups")
        self.pre_project = nn.Conv2d(deep_channels, skip_channels, 1)
        g = skip_channels // 2 + 1  # a quarter of each input plus the mask
        self.groups = nn.ModuleList(
            nn.Sequential(LayerNorm2d(g, eps=1e-6), nn.Conv2d(g, g, 3, padding=d, dilation=d, groups=g))
            for d in dilations
        )
        merged = 2 * skip_channels + 4  # four groups of (skip/2 + 1) channels
        self.tail = nn.Sequential(LayerNorm2d(merged, eps=1e-6), nn.Conv2d(merged, skip_channels, 1))

    def forward(self, deep: torch.Tensor, skip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        deep = _resize(self.pre_project(deep), skip.shape[-2:])
        parts = [
            block(torch.cat([d, s, mask], dim=1))
            for block, d, s in zip(self.groups, torch.chunk(deep, 4, dim=1), torch.chunk(skip, 4, dim=1))
        ]
        return self.tail(torch.cat(parts, dim=1))

"""Efficient multi-scale attention (EMA; Ouyang et al., ICASSP 2023).

Named `EMAttention` so it is not mistaken for an exponential moving average of weights.
"""

from __future__ import annotations

import torch
from torch import nn


class EMAttention(nn.Module):
    """Channels are folded into `factor` groups along the batch axis (no channel reduction).

    Per group, a 1x1 branch builds direction-aware attention from the row and column averages
    (coordinate-attention style, then GroupNorm) and a 3x3 branch captures local context. Each
    branch's channel softmax of its global average weights the other branch's map ("cross-spatial
    learning"); the sum gives one spatial attention map per group, applied with a sigmoid.
    """

    def __init__(self, channels: int, factor: int = 8) -> None:
        super().__init__()
        if channels % factor or channels // factor < 1:
            raise ValueError(f"EMAttention: channels={channels} must be a positive multiple of factor={factor}")
        self.groups = factor
        cg = channels // factor
        self.norm = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b * self.groups, c // self.groups, h, w)
        rows = g.mean(dim=3, keepdim=True)  # (bg, cg, h, 1)
        cols = g.mean(dim=2, keepdim=True).transpose(2, 3)  # (bg, cg, w, 1)
        att_rows, att_cols = torch.split(self.conv1x1(torch.cat([rows, cols], dim=2)), [h, w], dim=2)
        branch1 = self.norm(g * att_rows.sigmoid() * att_cols.transpose(2, 3).sigmoid())
        branch2 = self.conv3x3(g)

        def channel_softmax(t: torch.Tensor) -> torch.Tensor:
            # (bg, 1, cg): softmax over channels of the global average.
            return torch.softmax(t.mean(dim=(2, 3)).unsqueeze(1), dim=-1)

        weights = channel_softmax(branch1) @ branch2.flatten(2) + channel_softmax(branch2) @ branch1.flatten(2)
        return (g * weights.view(b * self.groups, 1, h, w).sigmoid()).reshape(b, c, h, w)

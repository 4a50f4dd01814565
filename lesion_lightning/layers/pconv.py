"""Partial convolution of FasterNet (Chen et al., CVPR 2023), as used in SCSONet's SCF block.

Not to be confused with the masked "partial convolution" for inpainting (Liu et al., 2018).
"""

from __future__ import annotations

import torch
from torch import nn


class PConv(nn.Module):
    """A kxk conv (no bias) on the first `channels // n_div` channels; the others pass through.

    Touching only a contiguous slice of channels keeps memory access regular and costs about
    1/n_div^2 of a full convolution's FLOPs.
    """

    def __init__(self, channels: int, n_div: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv_channels = channels // n_div
        if self.conv_channels < 1:
            raise ValueError(f"PConv: channels={channels} with n_div={n_div} leaves no channel to convolve")
        self.conv = nn.Conv2d(self.conv_channels, self.conv_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = torch.split(x, [self.conv_channels, x.shape[1] - self.conv_channels], dim=1)
        return torch.cat([self.conv(head), tail], dim=1)

"""1-D factorised residual blocks: ERFNet's non-bottleneck-1D (Romera et al., 2018) and SLSNet's FAM.

A 3x3 convolution is replaced by a 3x1 then a 1x3 convolution with a ReLU between them (SLSNet eq. 6):
2 * 3 * C^2 weights instead of 9 * C^2, with the non-linearity making the pair more expressive than a
rank-1 3x3 kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesion_lightning.layers.danet import CAM

BN_EPS = 1e-3  # ERFNet's BatchNorm epsilon


class NonBottleneck1D(nn.Module):
    """ERFNet non-bottleneck-1D: (3x1 -> ReLU -> 1x3 -> BN -> ReLU) then the same pair with `dilation`,
    BN, Dropout2d, and `ReLU(out + x)`; the channel count is kept."""

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"NonBottleneck1D needs channels >= 1, got {channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"NonBottleneck1D dropout must be in [0, 1), got {dropout}")
        if dilation < 1:
            raise ValueError(f"NonBottleneck1D dilation must be >= 1, got {dilation}")
        d = dilation
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d))
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv3x1_1(x))
        out = F.relu(self.bn1(self.conv1x3_1(out)))
        out = F.relu(self.conv3x1_2(out))
        out = self.dropout(self.bn2(self.conv1x3_2(out)))
        return F.relu(out + x)


class FAM(nn.Module):
    """SLSNet's factorised-attention module (Fig. 4): a non-bottleneck-1D block followed by a CAM.

    `use_cam=False` leaves the plain factorised block (the ablations of SLSNet Table 6 without CAM).
    """

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1, use_cam: bool = True) -> None:
        super().__init__()
        self.factorized = NonBottleneck1D(channels, dropout=dropout, dilation=dilation)
        self.cam = CAM() if use_cam else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam(self.factorized(x))

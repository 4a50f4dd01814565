"""Spatial and channel reconstruction convolution (SCConv; Li, Wen & He, CVPR 2023).

`SCConv` = `SRU` (spatial reconstruction: gate features by the normalisation's learned scales and
cross-add the informative and uninformative halves) followed by `CRU` (channel reconstruction:
split, squeeze, a rich and a cheap transform, softmax-weighted fusion). The details follow the
public SCConv code that SCSONet uses, including its quirks (see `FlatGroupNorm`, `SRU`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FlatGroupNorm(nn.Module):
    """Group normalisation over the flattened (C*H*W) feature, cut into `groups` equal slices.

    Unlike `nn.GroupNorm` the slices need not hold whole channels: the tensor is viewed as
    (N, groups, -1), so 24 channels in 16 groups works as long as C*H*W divides by 16. It divides
    by the unbiased std plus `eps` (not sqrt(var + eps)), and the per-channel scale starts from a
    standard normal draw because SRU reads it as a channel-importance signal.
    """

    def __init__(self, channels: int, groups: int = 16, eps: float = 1e-10) -> None:
        super().__init__()
        if channels < groups:
            raise ValueError(f"FlatGroupNorm: channels ({channels}) must be >= groups ({groups})")
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if (c * h * w) % self.groups:
            raise ValueError(f"FlatGroupNorm: C*H*W = {c}*{h}*{w} is not divisible by groups={self.groups}")
        flat = x.reshape(n, self.groups, -1)
        flat = (flat - flat.mean(dim=2, keepdim=True)) / (flat.std(dim=2, keepdim=True) + self.eps)
        return flat.view(n, c, h, w) * self.weight + self.bias


class SRU(nn.Module):
    """Spatial reconstruction unit.

    Channel importance is the normalisation's scale divided by its sum; a position is
    "informative" where sigmoid(norm(x) * importance) >= `gate_threshold`. The informative and
    uninformative parts of x are each split into channel halves and cross-added
    (informative first half + uninformative second half, and vice versa).

    The gate is a hard threshold, so no gradient reaches the normalisation's weight and bias: as in
    the official code they keep their initial values during training.
    """

    def __init__(self, channels: int, groups: int = 16, gate_threshold: float = 0.5) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"SRU: channels must be even to cross-add halves, got {channels}")
        self.norm = FlatGroupNorm(channels, groups)
        self.gate_threshold = gate_threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        importance = self.norm.weight / self.norm.weight.sum()
        informative = torch.sigmoid(self.norm(x) * importance) >= self.gate_threshold
        x_info = x * informative
        x_rest = x * ~informative
        half = x.shape[1] // 2
        return torch.cat(
            [x_info[:, :half] + x_rest[:, half:], x_info[:, half:] + x_rest[:, :half]],
            dim=1,
        )


class CRU(nn.Module):
    """Channel reconstruction unit.

    Channels split into an upper (alpha*C) and a lower part, each squeezed by a 1x1 conv. Upper:
    group-wise kxk conv + pointwise conv, both to C. Lower: a pointwise conv to C - C_low/squeeze,
    concatenated with its own input (the cheap "reuse" path). The two C-channel results are
    stacked, weighted by a softmax over the 2C channels of their global average, and summed.
    """

    def __init__(
        self,
        channels: int,
        alpha: float = 0.5,
        squeeze_ratio: int = 2,
        group_size: int = 2,
        group_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.up_channels = int(alpha * channels)
        self.low_channels = channels - self.up_channels
        up_sq = self.up_channels // squeeze_ratio
        low_sq = self.low_channels // squeeze_ratio
        if up_sq < 1 or low_sq < 1 or up_sq % group_size or channels % group_size:
            raise ValueError(
                f"CRU: channels={channels} with alpha={alpha}, squeeze_ratio={squeeze_ratio}, "
                f"group_size={group_size} gives an empty or ungroupable branch"
            )
        self.squeeze_up = nn.Conv2d(self.up_channels, up_sq, 1, bias=False)
        self.squeeze_low = nn.Conv2d(self.low_channels, low_sq, 1, bias=False)
        self.group_conv = nn.Conv2d(
            up_sq, channels, group_kernel_size, padding=group_kernel_size // 2, groups=group_size
        )
        self.point_up = nn.Conv2d(up_sq, channels, 1, bias=False)
        self.point_low = nn.Conv2d(low_sq, channels - low_sq, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(x, [self.up_channels, self.low_channels], dim=1)
        up, low = self.squeeze_up(up), self.squeeze_low(low)
        y_up = self.group_conv(up) + self.point_up(up)
        y_low = torch.cat([self.point_low(low), low], dim=1)
        y = torch.cat([y_up, y_low], dim=1)
        y = y * torch.softmax(F.adaptive_avg_pool2d(y, 1), dim=1)
        first, second = torch.chunk(y, 2, dim=1)
        return first + second


class SCConv(nn.Module):
    """SRU then CRU on `channels` channels (the shape is unchanged)."""

    def __init__(
        self,
        channels: int,
        groups: int = 16,
        gate_threshold: float = 0.5,
        alpha: float = 0.5,
        squeeze_ratio: int = 2,
        group_size: int = 2,
        group_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.sru = SRU(channels, groups=groups, gate_threshold=gate_threshold)
        self.cru = CRU(
            channels,
            alpha=alpha,
            squeeze_ratio=squeeze_ratio,
            group_size=group_size,
            group_kernel_size=group_kernel_size,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cru(self.sru(x))

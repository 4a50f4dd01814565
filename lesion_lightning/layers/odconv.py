"""Omni-dimensional dynamic convolution (ODConv; Li, Zhou & Yao, ICLR 2022).

A convolution whose kernel is modulated per sample by four attentions computed from the input's
global average: over input channels, output filters, the k x k spatial positions and (when
`kernel_num > 1`) over a bank of candidate kernels. SCSONet's ConvStem uses one kernel
(`kernel_num=1`), so only the first three attentions exist there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OmniAttention(nn.Module):
    """GAP -> 1x1 conv -> BN -> ReLU, then one sigmoid (or softmax, for kernels) head per dimension.

    Heads that would be constant are not built and return None: filters for a depthwise conv,
    spatial positions for a 1x1 conv, kernels when there is a single kernel. BatchNorm runs on
    (B, C, 1, 1) descriptors, so training needs a batch of at least 2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        groups: int = 1,
        reduction: float = 0.0625,
        kernel_num: int = 1,
        min_channels: int = 16,
    ) -> None:
        super().__init__()
        hidden = max(int(in_channels * reduction), min_channels)
        self.kernel_size = kernel_size
        self.squeeze = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.norm = nn.BatchNorm2d(hidden)
        self.channel_head = nn.Conv2d(hidden, in_channels, 1)
        depthwise = groups == in_channels == out_channels
        self.filter_head = None if depthwise else nn.Conv2d(hidden, out_channels, 1)
        self.spatial_head = None if kernel_size == 1 else nn.Conv2d(hidden, kernel_size * kernel_size, 1)
        self.kernel_head = None if kernel_num == 1 else nn.Conv2d(hidden, kernel_num, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        b = x.shape[0]
        k = self.kernel_size
        z = F.relu(self.norm(self.squeeze(F.adaptive_avg_pool2d(x, 1))))
        channel = torch.sigmoid(self.channel_head(z))  # (B, Cin, 1, 1)
        filters = torch.sigmoid(self.filter_head(z)) if self.filter_head is not None else None  # (B, Cout, 1, 1)
        # Shaped to broadcast against a (B, K, Cout, Cin/g, k, k) kernel bank.
        spatial = kernels = None
        if self.spatial_head is not None:
            spatial = torch.sigmoid(self.spatial_head(z)).view(b, 1, 1, 1, k, k)
        if self.kernel_head is not None:
            kernels = torch.softmax(self.kernel_head(z).view(b, -1, 1, 1, 1, 1), dim=1)
        return channel, filters, spatial, kernels


class ODConv2d(nn.Module):
    """ODConv layer without bias: `conv(x * a_in, sum_k a_k * (a_spatial * W_k)) * a_out`.

    Multiplying the input by the input-channel attention and the output by the filter attention is
    equivalent to scaling the kernel along those dimensions, and cheaper. When the kernel differs
    per sample (spatial or kernel attention present) the batch is folded into the channel axis and
    run as one grouped convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        reduction: float = 0.0625,
        kernel_num: int = 1,
        min_attention_channels: int = 16,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"ODConv2d: channels {in_channels}->{out_channels} are not divisible by groups={groups}")
        if kernel_num < 1:
            raise ValueError(f"ODConv2d: kernel_num must be >= 1, got {kernel_num}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.dilation = dilation
        self.groups = groups
        self.kernel_num = kernel_num
        self.attention = OmniAttention(
            in_channels,
            out_channels,
            kernel_size,
            groups=groups,
            reduction=reduction,
            kernel_num=kernel_num,
            min_channels=min_attention_channels,
        )
        self.weight = nn.Parameter(
            torch.empty(kernel_num, out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        for w in self.weight:
            nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel, filters, spatial, kernels = self.attention(x)
        x = x * channel
        weight = self.weight.unsqueeze(0)  # (1, K, Cout, Cin/g, k, k)
        if spatial is not None:
            weight = weight * spatial
        if kernels is not None:
            weight = weight * kernels
        weight = weight.sum(dim=1)  # (B or 1, Cout, Cin/g, k, k)
        conv_args = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
        if weight.shape[0] == 1:
            out = F.conv2d(x, weight[0], groups=self.groups, **conv_args)
        else:
            b, c, h, w = x.shape
            out = F.conv2d(x.reshape(1, b * c, h, w), weight.flatten(0, 1), groups=self.groups * b, **conv_args)
            out = out.view(b, self.out_channels, *out.shape[-2:])
        if filters is not None:
            out = out * filters
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, kernel_num={self.kernel_num}"
        )

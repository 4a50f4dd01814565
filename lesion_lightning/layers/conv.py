"""Plain convolution blocks: conv -> norm -> activation, depthwise and depthwise-separable convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H x W for an odd kernel at stride 1."""
    if kernel_size % 2 == 0:
        raise ValueError(f"'same' padding needs an odd kernel size, got {kernel_size}")
    return dilation * (kernel_size - 1) // 2


def pad_to_multiple(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Pad H and W (bottom/right) up to multiples of `divisor` so every pooling level divides evenly.

    Reflect padding where the image is larger than the pad, else replicate. Crop the output back
    with `[..., :h, :w]`.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % divisor, (-w) % divisor
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x


class ConvBNAct(nn.Sequential):
    """Conv2d (same padding) -> optional BatchNorm -> optional activation.

    `bias=None` keeps the conv bias only when no norm follows; pass True to keep it anyway (MATLAB
    layers, counted by LANET's appendix A, keep it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm: bool = True,
        activation: type[nn.Module] | nn.Module | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        use_bias = (not norm) if bias is None else bias
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=same_padding(kernel_size, dilation),
                dilation=dilation,
                groups=groups,
                bias=use_bias,
            )
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(activation if isinstance(activation, nn.Module) else activation())
        super().__init__(*layers)


def depthwise_conv(channels: int, kernel_size: int = 3, *, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    """Depthwise (one filter per channel, groups = channels) convolution with same padding."""
    return nn.Conv2d(
        channels,
        channels,
        kernel_size,
        padding=same_padding(kernel_size, dilation),
        dilation=dilation,
        groups=channels,
        bias=bias,
    )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise k x k conv [-> norm -> act] -> pointwise 1x1 conv [-> norm -> act] (MobileNet v1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: bool = True,
        activation: type[nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        super().__init__(
            ConvBNAct(
                in_channels,
                in_channels,
                kernel_size,
                stride=stride,
                dilation=dilation,
                groups=in_channels,
                norm=norm,
                activation=activation,
                bias=bias,
            ),
            ConvBNAct(in_channels, out_channels, 1, norm=norm, activation=activation, bias=bias),
        )

"""MobileNetV2 inverted-residual (MBConv) blocks, built on timm's implementation.

timm's `InvertedResidual` is exactly the MobileNetV2 block: 1x1 expansion (BN+act), 3x3 depthwise
(BN+act), linear 1x1 projection (BN, no activation) and an identity skip when stride is 1 and the
widths match. These helpers only fix the arguments the papers describe.
"""

from __future__ import annotations

from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

__all__ = ["InvertedResidual", "MBConvStage", "mbconv"]


def mbconv(
    in_channels: int,
    out_channels: int,
    *,
    stride: int = 1,
    expansion: float = 6.0,
    kernel_size: int = 3,
    act_layer: type[nn.Module] = nn.SiLU,
) -> InvertedResidual:
    """One inverted-residual block (expansion `t`, depthwise `kernel_size`, BN + `act_layer`)."""
    if stride not in (1, 2):
        raise ValueError(f"MBConv stride must be 1 or 2, got {stride}")
    if expansion < 1:
        raise ValueError(f"MBConv expansion must be >= 1, got {expansion}")
    return InvertedResidual(
        in_channels,
        out_channels,
        dw_kernel_size=kernel_size,
        stride=stride,
        exp_ratio=expansion,
        act_layer=act_layer,
    )


class MBConvStage(nn.Sequential):
    """`depth` MBConv blocks; the first one changes the width and applies `stride`, the rest refine."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int,
        *,
        stride: int = 2,
        expansion: float = 6.0,
        act_layer: type[nn.Module] = nn.SiLU,
    ) -> None:
        if depth < 1:
            raise ValueError(f"an MBConv stage needs depth >= 1, got {depth}")
        blocks = [mbconv(in_channels, out_channels, stride=stride, expansion=expansion, act_layer=act_layer)]
        blocks += [
            mbconv(out_channels, out_channels, stride=1, expansion=expansion, act_layer=act_layer)
            for _ in range(depth - 1)
        ]
        super().__init__(*blocks)

"""LANET (Khalaf et al., CMES 2026): lightweight attention network, layer for layer from appendix A.

    encoder x4 (16/32/64/128):  Conv3x3 -> BN -> ReLU -> depthwise 3x3 (bias) -> clipped ReLU(6)
                                -> pooled-unpooled attention [Conv3x3 -> LeakyReLU(0.01) -> Conv1x1 on R]
                                -> skip; MaxPool 2x2 to the next block
    bottleneck (H/16):          ASPP, four 16-channel branches (1x1, 3x3 dilation 6/12/18), conv + BN + ReLU,
                                concatenated (64 channels)
    decoder x4 (128/64/32/16):  TransposedConv2x2 -> concat skip -> Conv3x3 -> BN -> ReLU
                                -> depthwise 3x3 (bias) -> clipped ReLU(6)
    head:                       Conv1x1 -> 2 classes (softmax applied by the task)

With the defaults the model has exactly the 846,786 learnable parameters of appendix A (every conv
keeps its bias, as MATLAB layers do). The reading of the paper behind each choice is in
docs/models/lanet.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lesion_lightning.layers.aspp import ASPP
from lesion_lightning.layers.attention import PooledUnpooledAttention
from lesion_lightning.layers.conv import ConvBNAct, depthwise_conv, pad_to_multiple
from lesion_lightning.models.registry import register_model

PAPER_FIGURES = {
    "params": 846_786,
    "params_exact": True,  # appendix A lists every layer
    "gflops": 4.22,
    "memory_mb": 3.2,
    "layers": 136,
    "flops_note": (
        "GFLOPs at 224x224 with one MAC = 2 FLOPs (Table 4); the paper does not say what it counted. Ours "
        "(torch FlopCounterMode, convolutions only): 1.757 GMAC / 3.514 GFLOPs; 4.22 would be 2.11 GMAC. "
        "See docs/models/lanet.md."
    ),
    "source": "LANET (Khalaf et al., CMES 2026) Table 3, Table 4, appendix A",
}


class LANETEncoderBlock(nn.Sequential):
    """Conv3x3 -> BN -> ReLU -> depthwise 3x3 -> clipped ReLU -> pooled-unpooled attention."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_conv: bool = False,
                 attention: bool = True) -> None:
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, out_channels, 3, activation=nn.ReLU, bias=True),
            depthwise_conv(out_channels, 3, bias=True),
            nn.ReLU6(),
        ]
        if attention:
            layers.append(PooledUnpooledAttention(out_channels, negative_slope=0.01, spatial_conv=spatial_conv))
        super().__init__(*layers)


class LANETDecoderBlock(nn.Module):
    """TransposedConv2x2 -> concat skip -> Conv3x3 -> BN -> ReLU -> depthwise 3x3 -> clipped ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.refine = nn.Sequential(
            ConvBNAct(out_channels + skip_channels, out_channels, 3, activation=nn.ReLU, bias=True),
            depthwise_conv(out_channels, 3, bias=True),
            nn.ReLU6(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.refine(torch.cat([self.up(x), skip], dim=1))


def _glorot_init_(module: nn.Module) -> None:
    # MATLAB's defaults: Glorot-uniform weights (fans per group), zero biases; BN scale 1, offset 0.
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            receptive = m.weight[0, 0].numel()
            fans = (m.in_channels + m.out_channels) // m.groups * receptive
            bound = math.sqrt(6.0 / fans)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_model(
    "lanet",
    input_size=(3, 224, 224),
    preset="lanet",
    num_classes=2,
    paper=PAPER_FIGURES,
    description="LANET: depthwise encoder + pooled-unpooled attention + ASPP bottleneck (846,786 params)",
)
class LANET(nn.Module):
    """LANET; any input size (sides are padded to multiples of 16 and the output cropped back).

    Returns logits (B, num_classes, H, W). `spatial_conv=True` adds Algorithm 1's 7x7 spatial-attention
    conv to every encoder attention block (4 x 99 = 396 more parameters).

    Table 11's ablation rows: `attention=False` drops the encoders' pooled-unpooled attention;
    `aspp=False` replaces the ASPP bottleneck by one Conv3x3 -> BN -> ReLU of the same output width
    (`attention=False, aspp=False` is "U-Net + depthwise conv.").
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        widths: Sequence[int] = (16, 32, 64, 128),
        aspp_channels: int = 16,
        aspp_dilations: Sequence[int] = (1, 6, 12, 18),
        spatial_conv: bool = False,
        attention: bool = True,
        aspp: bool = True,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or any(w < 1 for w in widths):
            raise ValueError(f"LANET widths must be positive, got {widths}")
        self.divisor = 2 ** len(widths)
        chans = (in_channels, *widths)
        self.encoders = nn.ModuleList(
            LANETEncoderBlock(chans[i], chans[i + 1], spatial_conv=spatial_conv, attention=attention)
            for i in range(len(widths))
        )
        self.pool = nn.MaxPool2d(2)
        if aspp:
            self.aspp = ASPP(widths[-1], aspp_channels, aspp_dilations, first_branch_1x1=True, bias=True)
            deep = self.aspp.out_channels
        else:
            deep = aspp_channels * len(tuple(aspp_dilations))
            self.aspp = ConvBNAct(widths[-1], deep, 3, activation=nn.ReLU, bias=True)
        decoders = []
        for width in reversed(widths):
            decoders.append(LANETDecoderBlock(deep, width, width))
            deep = width
        self.decoders = nn.ModuleList(decoders)
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        _glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.divisor)
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.aspp(self.pool(x))
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = decoder(x, skip)
        return self.head(x)[..., :h, :w]

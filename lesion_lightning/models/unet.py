"""The U-Net of Ronneberger et al. (MICCAI 2015), registered as `unet`; also the base of `unet_aksoy`.

Per level two 3x3 conv + ReLU (no BatchNorm, as in the paper), 2x2 max-pool down, 2x2 stride-2
transposed conv up, concat([skip, up]), two 3x3 conv + ReLU; 1x1 conv head. Widths 64 ... 1024
give the ~31.0M parameters LANET's Table 4 lists for U-Net. Differences from the 2015 paper, chosen
so the output matches the input size (as in LANET's MATLAB baseline): 'same' padding instead of
unpadded convolutions with cropped skips. Dropout (p=0.5) at the end of the contracting path as
the paper describes; weights He-normal (std sqrt(2/fan_in)) as the paper prescribes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lesion_lightning.layers.conv import ConvBNAct, pad_to_multiple
from lesion_lightning.models.registry import register_model

PAPER_FIGURES = {
    "params": 31_000_000,
    "gflops": 7.42,
    "memory_mb": 118.3,
    "layers": 70,
    "flops_note": (
        "LANET Table 4 (224x224, MAC = 2 FLOPs): 31 M parameters, 7.42 GFLOPs. The 7.42 is far below what a "
        "64-1024 U-Net costs at 224x224 (~41.9 GMAC, ~84 GFLOPs); see docs/models/unets.md."
    ),
    "source": "LANET (Khalaf et al., CMES 2026) Table 4; U-Net: Ronneberger et al., MICCAI 2015",
}


def double_conv(cin: int, cout: int, batch_norm: bool = False, bias: bool | None = None) -> nn.Sequential:
    """Two 3x3 'same' convolutions, each followed by (BatchNorm and) ReLU; `bias` as in `ConvBNAct`."""
    return nn.Sequential(
        ConvBNAct(cin, cout, 3, norm=batch_norm, activation=nn.ReLU, bias=bias),
        ConvBNAct(cout, cout, 3, norm=batch_norm, activation=nn.ReLU, bias=bias),
    )


def init_weights_(module: nn.Module, scheme: str) -> None:
    """'he': normal(0, sqrt(2 / fan_in)) (Ronneberger); 'glorot': Keras' glorot_uniform; biases zero."""
    if scheme not in ("he", "glorot", "torch"):
        raise ValueError(f"unknown init scheme {scheme!r}; choose 'he', 'glorot' or 'torch'")
    if scheme == "torch":
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            receptive = m.weight[0, 0].numel()
            fan_in = m.in_channels // m.groups * receptive
            fan_out = m.out_channels // m.groups * receptive
            if scheme == "he":
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            else:
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class UNet(nn.Module):
    """Plain U-Net: `widths[:-1]` are the encoder levels, `widths[-1]` the bottleneck.

    Any input size works: sides are padded (reflect) to a multiple of 2**(levels) and the output is
    cropped back. Returns logits (B, num_classes, H, W).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        widths: Sequence[int] = (64, 128, 256, 512, 1024),
        *,
        batch_norm: bool = False,
        dropout: float = 0.5,
        init: str = "he",
        conv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"UNet needs at least one encoder level and a bottleneck, got widths={widths}")
        self.divisor = 2 ** (len(widths) - 1)
        chans = (in_channels, *widths)
        self.encoders = nn.ModuleList(double_conv(chans[i], chans[i + 1], batch_norm, conv_bias)
                                      for i in range(len(widths)))
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for deep, skip in zip(reversed(widths[1:]), reversed(widths[:-1])):
            self.ups.append(nn.ConvTranspose2d(deep, skip, 2, stride=2))
            self.decoders.append(double_conv(2 * skip, skip, batch_norm, conv_bias))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        init_weights_(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.divisor)
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.dropout(skips.pop())
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([skip, up(x)], dim=1))
        return self.head(x)[..., :h, :w]


@register_model(
    "unet",
    input_size=(3, 224, 224),
    preset="lanet",
    num_classes=2,
    paper=PAPER_FIGURES,
    description="U-Net (Ronneberger 2015), 64-1024 channels, 'same' padding, no BatchNorm (~31.0M params)",
)
def unet(
    in_channels: int = 3,
    num_classes: int = 2,
    widths: Sequence[int] = (64, 128, 256, 512, 1024),
    batch_norm: bool = False,
    dropout: float = 0.5,
    init: str = "he",
) -> UNet:
    """Ronneberger's U-Net as LANET compares against it (2-class softmax head at 224x224)."""
    return UNet(in_channels, num_classes, widths, batch_norm=batch_norm, dropout=dropout, init=init)


SMALL_UNET_PAPER = {
    "params": 7_770_000,
    "gmacs": 13.76,  # printed as "GFLOPs": thop MACs
    "flops_note": (
        "SCSONet Table 1 (after MALUNet/EGE-UNet) at 256x256: 7.77M params, 13.76 'GFLOPs' = thop's MACs, which "
        "count a 2x2 stride-2 transposed conv as output pixels x C_in x C_out x 4 (4x its real MACs) and a "
        "BatchNorm as 4 ops per element; with that convention ours is 13.746 G (see docs/models/unets.md)."
    ),
    "source": "SCSONet (Chen et al., 2024) Table 1; MALUNet (Ruan et al., BIBM 2022) Table 1",
}


@register_model(
    "unet_small",
    input_size=(3, 256, 256),
    preset="scsonet",
    num_classes=1,
    paper=SMALL_UNET_PAPER,
    description="the small U-Net of the lightweight-model papers: 32-512 channels, conv-BN-ReLU, transposed-conv up (7.77M)",
)
def unet_small(
    in_channels: int = 3,
    num_classes: int = 1,
    widths: Sequence[int] = (32, 64, 128, 256, 512),
) -> UNet:
    """The U-Net MALUNet, EGE-UNet and SCSONet compare against: conv (with bias) -> BN -> ReLU twice per level,
    no dropout, PyTorch's default initialisation, one sigmoid output channel."""
    return UNet(in_channels, num_classes, widths, batch_norm=True, dropout=0.0, init="torch", conv_bias=True)

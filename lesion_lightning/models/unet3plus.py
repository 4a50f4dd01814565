"""UNet 3+ (Huang et al., ICASSP 2020): U-Net with full-scale skip connections.

Encoder: five levels of two 3x3 conv + BN + ReLU (64, 128, 256, 512, 1024), 2x2 max-pool between.
Each decoder level d (4 ... 1) gathers all five scales, each brought to level d's resolution and
reduced to `cat_channels` (64) by a 3x3 conv + BN + ReLU:
    shallower encoder maps  -> max-pool by 2^(d-i) (ceil)
    same-level encoder map  -> as is
    deeper decoder maps and the bottleneck -> bilinear upsampling by 2^(j-d)
then concatenates them (5 x 64 = 320 channels) and fuses with a 3x3 conv (320 -> 320) + BN + ReLU.
A 3x3 conv maps the full-resolution decoder output to the classes. Without deep supervision and the
classification-guided module (the variant LANET's Table 4 counts: ~26.9M parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lesion_lightning.layers.conv import ConvBNAct, pad_to_multiple
from lesion_lightning.models.registry import register_model

PAPER_FIGURES = {
    "params": 26_900_000,
    "gflops": 6.80,
    "memory_mb": 102.6,
    "layers": 92,
    "flops_note": (
        "LANET Table 4 (224x224, MAC = 2 FLOPs): 26.9 M parameters, 6.80 GFLOPs. A 64-1024 UNet 3+ costs far "
        "more at 224x224 (see docs/models/unets.md). The UNet 3+ paper itself lists 26.97 M parameters."
    ),
    "source": "LANET (Khalaf et al., CMES 2026) Table 4; UNet 3+: Huang et al., ICASSP 2020",
}


def _cbr(cin: int, cout: int) -> ConvBNAct:
    # Conv keeps its bias before BN, as the reference implementation counts it.
    return ConvBNAct(cin, cout, 3, activation=nn.ReLU, bias=True)


class UNet3Plus(nn.Module):
    """UNet 3+; any input size (padded to a multiple of 2**(levels-1), cropped back). Returns logits."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        widths: Sequence[int] = (64, 128, 256, 512, 1024),
        cat_channels: int = 64,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        levels = len(widths)
        if levels < 2:
            raise ValueError(f"UNet3Plus needs at least two levels, got widths={widths}")
        self.levels = levels
        self.divisor = 2 ** (levels - 1)
        up_channels = cat_channels * levels
        chans = (in_channels, *widths)
        self.encoders = nn.ModuleList(
            nn.Sequential(_cbr(chans[i], chans[i + 1]), _cbr(chans[i + 1], chans[i + 1])) for i in range(levels)
        )
        self.pool = nn.MaxPool2d(2)
        # decoders[k] builds decoder level d = levels-2-k (0-based, deepest first); each has one
        # reduction conv per source scale (0 ... levels-1) and a fusion conv.
        self.reduce = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for d in range(levels - 2, -1, -1):
            convs = []
            for src in range(levels):
                if src <= d or src == levels - 1:
                    src_ch = widths[src]  # encoder map (or the bottleneck)
                else:
                    src_ch = up_channels  # a deeper decoder map
                convs.append(_cbr(src_ch, cat_channels))
            self.reduce.append(nn.ModuleList(convs))
            self.fuse.append(_cbr(up_channels, up_channels))
        self.head = nn.Conv2d(up_channels, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.divisor)
        enc = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            enc.append(x)
        # maps[s] is the current representation at scale s: encoder maps, replaced by decoder maps as built.
        maps: list[torch.Tensor] = list(enc)
        for k, d in enumerate(range(self.levels - 2, -1, -1)):
            size = enc[d].shape[-2:]
            parts = []
            for src, conv in enumerate(self.reduce[k]):
                feat = maps[src]
                if src < d:
                    factor = 2 ** (d - src)
                    feat = F.max_pool2d(feat, factor, factor, ceil_mode=True)
                elif src > d:
                    feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=False)
                parts.append(conv(feat))
            maps[d] = self.fuse[k](torch.cat(parts, dim=1))
        return self.head(maps[0])[..., :h, :w]


@register_model(
    "unet3plus",
    input_size=(3, 224, 224),
    preset="lanet",
    num_classes=2,
    paper=PAPER_FIGURES,
    description="UNet 3+ (Huang 2020): full-scale skip connections, 64-1024 encoder (~26.97M params)",
)
def unet3plus(
    in_channels: int = 3,
    num_classes: int = 2,
    widths: Sequence[int] = (64, 128, 256, 512, 1024),
    cat_channels: int = 64,
) -> UNet3Plus:
    """UNet 3+ as LANET compares against it (2-class softmax head at 224x224)."""
    return UNet3Plus(in_channels, num_classes, widths, cat_channels)

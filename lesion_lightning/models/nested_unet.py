"""UNet++ (Zhou et al., DLMIA 2018) in its original nested form, registered as `unetplusplus_small`.

Node X(i, j) (level i, column j) fuses the outputs X(i, 0..j-1) of its level with X(i+1, j-1) upsampled
(bilinear x2), through two conv-BN-ReLU; X(i, 0) is the encoder. With widths 32-512 it is the 9.16M-parameter
UNet++ that MALUNet, EGE-UNet and SCSONet compare against (the form the UNeXt code base trains). The
output is X(0, 4) through a 1x1 conv; `deep_supervision=True` averages the heads of X(0, 1..4) instead
(the paper's mode for training with pruning). Any input size works (padded to a multiple of 16, cropped back).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lesion_lightning.layers.conv import pad_to_multiple
from lesion_lightning.models.registry import register_model
from lesion_lightning.models.unet import double_conv

PAPER_FIGURES = {
    "params": 9_160_000,
    "gmacs": 34.86,  # printed as "GFLOPs": thop MACs
    "flops_note": (
        "SCSONet Table 1 (after MALUNet/EGE-UNet) at 256x256: 9.16M params, 34.86 'GFLOPs' = thop's MACs, which "
        "also count a BatchNorm as 4 ops per element and a bilinear upsampling as 11 per output element; with "
        "that convention ours is 34.90 G (see docs/models/unets.md)."
    ),
    "source": "SCSONet (Chen et al., 2024) Table 1; MALUNet (Ruan et al., BIBM 2022) Table 1",
}


class NestedUNet(nn.Module):
    """UNet++ with dense nested skips; returns logits (B, num_classes, H, W)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        *,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.levels = len(widths)
        self.divisor = 2 ** (self.levels - 1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        # nodes[i][j] = X(i, j); level i has columns 0 .. levels-1-i
        self.nodes = nn.ModuleList()
        for i, width in enumerate(widths):
            level = nn.ModuleList()
            for j in range(self.levels - i):
                cin = (in_channels if i == 0 else widths[i - 1]) if j == 0 else width * j + widths[i + 1]
                level.append(double_conv(cin, width, batch_norm=True, bias=True))
            self.nodes.append(level)
        self.deep_supervision = deep_supervision
        heads = self.levels - 1 if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(widths[0], num_classes, 1) for _ in range(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.divisor)
        grid: list[list[torch.Tensor]] = [[] for _ in range(self.levels)]
        for i in range(self.levels):
            grid[i].append(self.nodes[i][0](x if i == 0 else self.pool(grid[i - 1][0])))
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                grid[i].append(self.nodes[i][j](torch.cat([*grid[i][:j], self.up(grid[i + 1][j - 1])], dim=1)))
        top = grid[0][1:] if self.deep_supervision else grid[0][-1:]
        out = torch.stack([head(t) for head, t in zip(self.heads, top)]).mean(0)
        return out[..., :h, :w]


@register_model(
    "unetplusplus_small",
    input_size=(3, 256, 256),
    preset="scsonet",
    num_classes=1,
    paper=PAPER_FIGURES,
    description="UNet++ (Zhou 2018) nested form, 32-512 channels, bilinear up (9.16M), as SCSONet Table 1 compares",
)
def unetplusplus_small(
    in_channels: int = 3,
    num_classes: int = 1,
    widths: Sequence[int] = (32, 64, 128, 256, 512),
    deep_supervision: bool = False,
) -> NestedUNet:
    """The small UNet++ of the lightweight-model papers (one sigmoid output channel)."""
    return NestedUNet(in_channels, num_classes, widths, deep_supervision=deep_supervision)

"""The six-stage lightweight U-shape shared by MALUNet (Ruan et al., BIBM 2022), EGE-UNet and SCSONet.

MALUNet and SCSONet differ only in their stage blocks; EGE-UNet also swaps the skip bridge (it
overrides `forward` but reuses `pad_input`, `encode` and `decode_stage`). The scaffold (GroupNorm,
max-pool, GELU, optional attention bridge on the skips, additive skips, bilinear upsampling) and
the weight initialisation are common, so they live here once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lesion_lightning.layers.conv import pad_to_multiple


def light_unet_init_(m: nn.Module) -> None:
    """Initialisation of the MALUNet code base (apply with `model.apply`).

    Linear: truncated normal std 0.02, bias 0. Conv1d: normal(0, sqrt(2 / (k * C_out))).
    Conv2d: normal(0, sqrt(2 / fan_out)) with fan_out = k*k*C_out / groups, bias 0.
    """
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv1d):
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.out_channels)))
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """The plain stage block of these models: 3x3 conv, padding 1, with bias."""
    return nn.Conv2d(cin, cout, 3, padding=1)


def six_widths(model_name: str, channels: Sequence[int]) -> tuple[int, ...]:
    """`channels` as a tuple; a ValueError naming `model_name` unless it lists 6 stage widths."""
    c = tuple(channels)
    if len(c) != 6:
        raise ValueError(f"{model_name}: channels must list 6 widths, got {c}")
    return c


class LightUNet(nn.Module):
    """Six encoder stages and five decoder stages around additive skips at H/2 ... H/32.

    Encoder stages 1-5: block -> GroupNorm(4) -> max-pool 2 -> GELU (their outputs are the skips);
    stage 6: block -> GELU at H/32. An optional bridge refines the five skips together.
    Decoder stage i: block -> GroupNorm(4) -> (bilinear x2, align_corners, from stage 2 on) -> GELU
    -> + skip. Head: 1x1 conv at H/2, bilinear x2. Returns logits.

    Inputs whose sides are not multiples of 32 are reflect-padded and the output cropped back.
    """

    stride = 32

    def __init__(
        self,
        channels: Sequence[int],
        encoders: Sequence[nn.Module],
        decoders: Sequence[nn.Module],
        bridge: nn.Module | None,
        num_classes: int,
        norm_groups: int = 4,
    ) -> None:
        super().__init__()
        if len(channels) != 6 or len(encoders) != 6 or len(decoders) != 5:
            raise ValueError("LightUNet needs 6 channel widths, 6 encoder blocks and 5 decoder blocks")
        self.channels = tuple(channels)
        self.encoders = nn.ModuleList(encoders)
        self.bridge = bridge
        self.decoders = nn.ModuleList(decoders)
        self.enc_norms = nn.ModuleList(nn.GroupNorm(norm_groups, c) for c in channels[:5])
        self.dec_norms = nn.ModuleList(nn.GroupNorm(norm_groups, c) for c in reversed(channels[:5]))
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    @staticmethod
    def _up2(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pad H and W up to multiples of 32 (reflect; replicate when the image is smaller than the pad)."""
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        return pad_to_multiple(x, self.stride)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoder stages: the five skips (H/2 ... H/32, before any bridge) and the stage-6 output."""
        skips = []
        out = x
        for block, norm in zip(self.encoders[:5], self.enc_norms):
            out = F.gelu(F.max_pool2d(norm(block(out)), 2))
            skips.append(out)
        return skips, F.gelu(self.encoders[5](out))

    def decode_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Decoder stage i (0-based), before its skip is added."""
        out = self.dec_norms[i](self.decoders[i](x))
        return F.gelu(self._up2(out) if i > 0 else out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        skips, out = self.encode(self.pad_input(x))
        if self.bridge is not None:
            skips = list(self.bridge(skips))
        for i in range(len(self.decoders)):
            out = self.decode_stage(i, out) + skips[4 - i]
        return self._up2(self.head(out))[..., :h, :w]

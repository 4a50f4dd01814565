"""EGE-UNet (Ruan et al., MICCAI 2023): efficient group enhanced U-Net for skin lesion segmentation.

MALUNet's six-stage U-shape with grouped multi-axis Hadamard product attention (GHPA) in encoder
stages 4-6 and decoder stages 1-3, and a group aggregation bridge (GAB) on every skip that fuses
the next deeper skip, the skip and a 1-channel prediction of the current decoder stage (the
"GT deep supervision" heads). Structure, widths and initialisation follow the official code
(github JCruan519/EGE-UNet, gt_ds=True): 53,374 parameters. Returns logits of the main output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lesion_lightning.layers.egeunet_blocks import GroupAggregationBridge, HadamardAxisAttention
from lesion_lightning.layers.light_unet import LightUNet, conv3x3, light_unet_init_, six_widths
from lesion_lightning.models.registry import register_model

PAPER_FIGURES = {
    "params": 53_000,
    "gflops": 0.072,
    "flops_note": (
        "SCSONet Table 1: 0.053M = the plain parameter count in decimal units; 0.072 = thop's MACs "
        "(72,096,256) in decimal units, printed as GFLOPs (the EGE-UNet paper says 50KB params, 0.072 GFLOPs). "
        "torch FlopCounterMode on the official code: 144.2M FLOPs at 256x256."
    ),
    "official_code_params": 53_374,
    "official_code_flops": 144_192_512,
    "source": "EGE-UNet (Ruan et al., MICCAI 2023); SCSONet Table 1; github JCruan519/EGE-UNet",
}


@register_model(
    "egeunet",
    input_size=(3, 256, 256),
    preset="scsonet",
    num_classes=1,
    paper=PAPER_FIGURES,
    description="EGE-UNet: GHPA blocks + group aggregation bridges with deep-supervision masks",
)
class EGEUNet(LightUNet):
    """EGE-UNet; any input size (sides are padded to multiples of 32).

    `forward(x)` returns the main logits (B, num_classes, H, W). `forward(x, return_aux=True)`
    returns `(logits, aux)` where `aux` holds the five deep-supervision logits (B, 1, H, W),
    deepest first, for the official loss (BCE+Dice on the main output plus 0.1, 0.2, 0.3, 0.4, 0.5
    times the same loss on the aux outputs). The aux heads feed the bridges, so they always run.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
    ) -> None:
        c = six_widths("EGEUNet", channels)
        encoders = [
            conv3x3(in_channels, c[0]),
            conv3x3(c[0], c[1]),
            conv3x3(c[1], c[2]),
            HadamardAxisAttention(c[2], c[3]),
            HadamardAxisAttention(c[3], c[4]),
            HadamardAxisAttention(c[4], c[5]),
        ]
        decoders = [
            HadamardAxisAttention(c[5], c[4]),
            HadamardAxisAttention(c[4], c[3]),
            HadamardAxisAttention(c[3], c[2]),
            conv3x3(c[2], c[1]),
            conv3x3(c[1], c[0]),
        ]
        super().__init__(c, encoders, decoders, None, num_classes)
        # bridges[i] fuses skip i+1 (or stage 6) into skip i; aux_heads follow the decoder (deepest first).
        self.bridges = nn.ModuleList(GroupAggregationBridge(c[i + 1], c[i]) for i in range(5))
        self.aux_heads = nn.ModuleList(nn.Conv2d(ch, 1, 1) for ch in reversed(c[:5]))
        self.apply(light_unet_init_)

    def forward(
        self, x: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2:]
        x = self.pad_input(x)
        skips, out = self.encode(x)
        deeper = out  # stage-6 output, then each refined skip in turn
        aux = []
        for i in range(5):
            out = self.decode_stage(i, out)
            pred = self.aux_heads[i](out)
            level = 4 - i
            deeper = self.bridges[level](deeper, skips[level], pred)
            out = out + deeper
            if return_aux:
                aux.append(F.interpolate(pred, size=x.shape[-2:], mode="bilinear", align_corners=True)[..., :h, :w])
        logits = self._up2(self.head(out))[..., :h, :w]
        return (logits, aux) if return_aux else logits

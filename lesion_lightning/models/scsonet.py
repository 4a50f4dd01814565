"""SCSONet (Chen et al., Frontiers in Physics 2024): spatial-channel synergistic optimisation net.

MALUNet's six-stage lightweight U-shape with its spatial-channel attention bridge, where
- the ConvStem (stages 1-3) is conv3x3 -> ODConv3x3 -> conv3x3 (the decoder mirrors it: conv3x3,
  ODConv3x3 in its last two stages), and
- the SCF block (stages 4-6) is SCConv -> PConv -> conv3x3 -> EMA in the encoder and
  conv3x3 -> PConv -> SCConv -> EMA in the first three decoder stages.

Structure and widths follow the official code (github Haoyu1Chen/SCSONet): 159,439 parameters.
The paper's 0.149M / 0.056 GFLOPs are thop counts in binary units that skip several layers; see
docs/models/scsonet.md. The paper's head ends with a sigmoid; this model returns the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lesion_lightning.layers.ema import EMAttention
from lesion_lightning.layers.light_unet import LightUNet, conv3x3, light_unet_init_, six_widths
from lesion_lightning.layers.odconv import ODConv2d
from lesion_lightning.layers.pconv import PConv
from lesion_lightning.layers.sc_bridge import SCAttentionBridge
from lesion_lightning.layers.scconv import SCConv
from lesion_lightning.models.registry import register_model

PAPER_FIGURES = {
    "params": 149_000,
    "gflops": 0.056,
    "flops_note": (
        "thop counts divided by 2^20 (params) and 2^30 (MACs, printed as FLOPs); thop skips GroupNorm, "
        "SCConv's group norm, ODConv's weight tensor and its functional conv. The official code has "
        "159,439 parameters and 165.5M FLOPs (torch FlopCounterMode) at 256x256."
    ),
    "official_code_params": 159_439,
    "official_code_flops": 165_529_920,
    "source": "SCSONet (Chen et al., Front. Phys. 2024) Table 1; official code github Haoyu1Chen/SCSONet",
}


def _scf_encoder(cin: int, cout: int, ema_factor: int) -> nn.Sequential:
    return nn.Sequential(SCConv(cin), PConv(cin), conv3x3(cin, cout), EMAttention(cout, ema_factor))


def _scf_decoder(cin: int, cout: int, ema_factor: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(cin, cout), PConv(cout), SCConv(cout), EMAttention(cout, ema_factor))


@register_model(
    "scsonet",
    input_size=(3, 256, 256),
    preset="scsonet",
    num_classes=1,
    paper=PAPER_FIGURES,
    description="SCSONet: ConvStem (ODConv) + SCF blocks (SCConv, PConv, EMA) in MALUNet's U-shape",
)
class SCSONet(LightUNet):
    """SCSONet; any input size (sides are padded to multiples of 32). Returns logits (B, num_classes, H, W).

    The ODConv attention uses BatchNorm on pooled descriptors, so training needs batches of 2 or more.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
        bridge: bool = True,
        ema_factor: int = 8,
    ) -> None:
        c = six_widths("SCSONet", channels)
        encoders = [
            conv3x3(in_channels, c[0]),
            ODConv2d(c[0], c[1], 3),
            conv3x3(c[1], c[2]),
            _scf_encoder(c[2], c[3], ema_factor),
            _scf_encoder(c[3], c[4], ema_factor),
            _scf_encoder(c[4], c[5], ema_factor),
        ]
        decoders = [
            _scf_decoder(c[5], c[4], ema_factor),
            _scf_decoder(c[4], c[3], ema_factor),
            _scf_decoder(c[3], c[2], ema_factor),
            conv3x3(c[2], c[1]),
            ODConv2d(c[1], c[0], 3),
        ]
        super().__init__(
            c,
            encoders,
            decoders,
            SCAttentionBridge(c[:5]) if bridge else None,
            num_classes,
        )
        self.apply(light_unet_init_)

"""SCSONet (Chen et al., Frontiers in Physics 2024): spatial-channel synergistic optimisation net.

MALUNet's six-stage lightweight U-shape with its spatial-channel attention bridge, where
- the ConvStem (stages 1-3) is conv3x3 -> ODConv3x3 -> conv3x3 (the decoder mirrors it: conv3x3,
  ODConv3x3 in its last two stages), and
- the SCF block (stages 4-6) is SCConv -> PConv -> conv3x3 -> EMA in the encoder and
  conv3x3 -> PConv -> SCConv -> EMA in the first three decoder stages.

Structure and widths follow the official code (github Haoyu1Chen/SCSONet): 159,439 parameters.
Ablation switches (Tables 2-3): `convstem=False` puts back MALUNet's plain stages 1-3, `scf=False` its
EA + DGA blocks in stages 4-6 (both False is MALUNet); `scf_mixer` swaps PConv for a depthwise-separable
or a dilated conv (or nothing) and `scf_ema=False` drops EMA.
The paper's 0.149M / 0.056 GFLOPs are thop counts in binary units that skip several layers; see
docs/models/scsonet.md. The paper's head ends with a sigmoid; this model returns the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lesion_lightning.layers.conv import DepthwiseSeparableConv
from lesion_lightning.layers.ema import EMAttention
from lesion_lightning.layers.light_unet import LightUNet, conv3x3, light_unet_init_, six_widths
from lesion_lightning.layers.odconv import ODConv2d
from lesion_lightning.layers.pconv import PConv
from lesion_lightning.layers.sc_bridge import SCAttentionBridge
from lesion_lightning.layers.scconv import SCConv
from lesion_lightning.models.malunet import malunet_decoder_block, malunet_encoder_block, tie_external_memories_
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


SCF_MIXERS = ("pconv", "dsconv", "dilated", "none")  # Table 3: what follows SCConv in the SCF block


def _mixer(kind: str, channels: int) -> nn.Module:
    if kind == "pconv":
        return PConv(channels)
    if kind == "dsconv":
        return DepthwiseSeparableConv(channels, channels, 3, norm=False, activation=None, bias=True)
    if kind == "dilated":
        return nn.Conv2d(channels, channels, 3, padding=2, dilation=2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"SCSONet: scf_mixer must be one of {', '.join(SCF_MIXERS)}, got {kind!r}")


def _scf_encoder(cin: int, cout: int, mixer: str, ema: bool, ema_factor: int) -> nn.Sequential:
    attention = EMAttention(cout, ema_factor) if ema else nn.Identity()
    return nn.Sequential(SCConv(cin), _mixer(mixer, cin), conv3x3(cin, cout), attention)


def _scf_decoder(cin: int, cout: int, mixer: str, ema: bool, ema_factor: int) -> nn.Sequential:
    attention = EMAttention(cout, ema_factor) if ema else nn.Identity()
    return nn.Sequential(conv3x3(cin, cout), _mixer(mixer, cout), SCConv(cout), attention)


def _stages(c: Sequence[int], in_channels: int, convstem: bool, scf: bool, scf_options: tuple) -> tuple[list, list]:
    """Encoder (6) and decoder (5) blocks: ConvStem or MALUNet's plain convs; SCF or MALUNet's EA + DGA."""
    middle = (lambda cin, cout: ODConv2d(cin, cout, 3)) if convstem else conv3x3
    if scf:
        deep_enc = [_scf_encoder(c[i], c[i + 1], *scf_options) for i in (2, 3, 4)]
        deep_dec = [_scf_decoder(c[i + 1], c[i], *scf_options) for i in (4, 3, 2)]
    else:
        deep_enc = [malunet_encoder_block(c[i], c[i + 1]) for i in (2, 3, 4)]
        deep_dec = [malunet_decoder_block(c[i + 1], c[i]) for i in (4, 3, 2)]
    encoders = [conv3x3(in_channels, c[0]), middle(c[0], c[1]), conv3x3(c[1], c[2]), *deep_enc]
    decoders = [*deep_dec, conv3x3(c[2], c[1]), middle(c[1], c[0])]
    return encoders, decoders


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
        convstem: bool = True,
        scf: bool = True,
        scf_mixer: str = "pconv",
        scf_ema: bool = True,
    ) -> None:
        c = six_widths("SCSONet", channels)
        encoders, decoders = _stages(c, in_channels, convstem, scf, (scf_mixer, scf_ema, ema_factor))
        super().__init__(c, encoders, decoders, SCAttentionBridge(c[:5]) if bridge else None, num_classes)
        self.apply(light_unet_init_)
        tie_external_memories_(self)

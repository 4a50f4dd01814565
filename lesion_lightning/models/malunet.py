"""MALUNet (Ruan et al., BIBM 2022): multi-attention lightweight U-Net for skin lesion segmentation.

Encoder stages 4-6: external attention (EA) -> dilated gated attention (DGA); decoder stages 1-3:
DGA -> EA; stages 1-3 and the last two decoder stages are plain 3x3 convs; MALUNet's
spatial-channel attention bridge sits on the skips. Structure, widths and initialisation follow
the official code (github JCruan519/MALUNet): 177,943 parameters. SCSONet's ablation base.
Returns logits (the official head applies a sigmoid).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lesion_lightning.layers.light_unet import LightUNet, conv3x3, light_unet_init_, six_widths
from lesion_lightning.layers.malunet_blocks import DilatedGatedAttention, ExternalAttention
from lesion_lightning.layers.sc_bridge import SCAttentionBridge
from lesion_lightning.models.registry import register_model

PAPER_FIGURES = {
    "params": 175_000,
    "gflops": 0.083,
    "flops_note": (
        "thop counts in decimal units (175,031 params, 82,972,800 MACs printed as FLOPs); thop skips "
        "GroupNorm. The official code has 177,943 parameters and 165.5M FLOPs (torch FlopCounterMode) at 256x256."
    ),
    "official_code_params": 177_943,
    "official_code_flops": 165_480_448,
    "source": "MALUNet (Ruan et al., BIBM 2022); SCSONet Table 1 and Table 2 (base); github JCruan519/MALUNet",
}


def malunet_encoder_block(cin: int, cout: int) -> nn.Sequential:
    """Encoder stages 4-6: external attention, then dilated gated attention."""
    return nn.Sequential(ExternalAttention(cin), DilatedGatedAttention(cin, cout))


def malunet_decoder_block(cin: int, cout: int) -> nn.Sequential:
    """Decoder stages 1-3: dilated gated attention, then external attention."""
    return nn.Sequential(DilatedGatedAttention(cin, cout), ExternalAttention(cout))


def tie_external_memories_(model: nn.Module) -> None:
    """The official initialisation of every external-attention memory pair (after `light_unet_init_`)."""
    for m in model.modules():
        if isinstance(m, ExternalAttention):
            m.tie_memory_init()


@register_model(
    "malunet",
    input_size=(3, 256, 256),
    preset="scsonet",
    num_classes=1,
    paper=PAPER_FIGURES,
    description="MALUNet: DGA + external attention + SC attention bridge (SCSONet's baseline)",
)
class MALUNet(LightUNet):
    """MALUNet; any input size (sides are padded to multiples of 32). Returns logits (B, num_classes, H, W)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
        bridge: bool = True,
    ) -> None:
        c = six_widths("MALUNet", channels)
        encoders = [
            conv3x3(in_channels, c[0]),
            conv3x3(c[0], c[1]),
            conv3x3(c[1], c[2]),
            malunet_encoder_block(c[2], c[3]),
            malunet_encoder_block(c[3], c[4]),
            malunet_encoder_block(c[4], c[5]),
        ]
        decoders = [
            malunet_decoder_block(c[5], c[4]),
            malunet_decoder_block(c[4], c[3]),
            malunet_decoder_block(c[3], c[2]),
            conv3x3(c[2], c[1]),
            conv3x3(c[1], c[0]),
        ]
        super().__init__(c, encoders, decoders, SCAttentionBridge(c[:5]) if bridge else None, num_classes)
        self.apply(light_unet_init_)
        tie_external_memories_(self)

"""MedLiteNet (Yu et al., 2025): lightweight CNN-Transformer hybrid for dermoscopic segmentation.

Layout (paper Sec. III, Fig. 4):

    stem 3x3/2 -> four MBConv stages (t=6, widths 32/64/128/256, first block stride 2, BN+SiLU)
      -> bottleneck local-global block: tokens -> linear to d + positional code -> L ViT layers,
         fused with the conv features, F = act(Conv1x1([F_conv || F_trans])) + F_conv + F_trans
      -> ASPP (four dilated 3x3 branches 1/r2/r3/12 + image pooling, each with a 1x1 projection) in
         parallel with SCSE, concatenated, 1x1 fuse to 256 channels
      -> boundary-aware attention (BAA) with transformer context  ("end of the encoder")
      -> U-Net decoder: 4 stages (upsample, concat skip, 2 conv-BN-SiLU, BAA except the last)
      -> 1x1 conv head, bilinear back to the input size (logits; the task applies the sigmoid).

Three complementary variants (`medlitenet` = A, `medlitenet_b`, `medlitenet_c`) differ in encoder
depth, transformer width/depth/positional code and edge filter; `medlitenet_ensemble` combines them
with validation-Dice weights (see `lesion_lightning.models.ensemble`). The choices the paper leaves
open are listed in docs/models/medlitenet.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from lesion_lightning.layers.aspp import ASPP
from lesion_lightning.layers.boundary import BoundaryAwareAttention
from lesion_lightning.layers.mbconv import MBConvStage
from lesion_lightning.layers.scse import scse
from lesion_lightning.layers.transformer import FeatureMapTransformer, LocalGlobalFusion
from lesion_lightning.models.ensemble import WeightedEnsemble
from lesion_lightning.models.registry import register_model

__all__ = ["MEDLITENET_VARIANTS", "MedLiteNet", "MedLiteNetConfig", "medlitenet_ensemble"]

_SOURCE = "MedLiteNet (Yu et al., 2025), abstract, Sec. I-C, Table I, Sec. III-B"

PAPER_FIGURES: dict[str, Any] = {
    "params": 3_200_000,
    "params_note": "3.2M (Table I, Sec. II, conclusion); abstract: 'fewer than 3.3M'; encoder ~1.8M (Sec. III-B)",
    "encoder_params": 1_800_000,
    "dice": 0.897,
    "dice_std": 0.010,
    "iou": 0.821,
    "iou_std": 0.015,
    "dataset": "ISIC 2018 (official split), single model",
    "latency_ms": 1.0,
    "latency_note": "FP16 at 256x256 on an RTX A6000; 23 ms with six-fold TTA",
    "flops_note": "the paper reports no FLOPs/MACs",
    "source": _SOURCE,
}

ENSEMBLE_PAPER_FIGURES: dict[str, Any] = {
    "params_max": 10_000_000,
    "params_note": "total of the three variants 'below 10M' (abstract); no exact figure",
    "dice": 0.904,
    "dice_std": 0.012,
    "iou": 0.830,
    "iou_std": 0.018,
    "dice_val": 0.913,
    "iou_val": 0.84,
    "dice_test": 0.905,
    "iou_test": 0.83,
    "dataset": "ISIC 2018; abstract figures, plus Sec. I-C validation 0.913/0.84 and test 0.905/0.83",
    "flops_note": "the paper reports no FLOPs/MACs",
    "source": "MedLiteNet (Yu et al., 2025), abstract, Sec. I-C, Table I",
}


@dataclass(frozen=True)
class MedLiteNetConfig:
    """Architecture settings of one MedLiteNet variant (defaults = variant A, the paper's single model)."""

    stem_channels: int = 32
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    depths: tuple[int, int, int, int] = (2, 3, 3, 2)
    expansion: float = 6.0
    embed_dim: int = 128
    transformer_depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    pos_embed: str = "sincos"
    aspp_dilations: tuple[int, ...] = (1, 4, 8, 12)
    aspp_branch_channels: int = 32
    aspp_projection_channels: int = 64
    aspp_out_channels: int = 256
    decoder_channels: tuple[int, int, int, int] = (112, 64, 32, 16)
    boundary_kernel: str = "laplacian"
    dropout: float = 0.0

    def validate(self) -> None:
        for name in ("widths", "depths", "decoder_channels"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"MedLiteNet {name} needs 4 entries (one per stage), got {getattr(self, name)}")
        if min(self.depths) < 1:
            raise ValueError(f"MedLiteNet depths must be >= 1, got {self.depths}")
        if not self.aspp_dilations:
            raise ValueError("MedLiteNet aspp_dilations must not be empty")


# Three complementary variants, each < 3.3M parameters (together < 10M):
#   A: the paper's single model as described (balanced encoder, 2 transformer layers, Laplacian BAA).
#   B: global-heavy: shallower encoder (one block in the last stage), a wider and deeper transformer
#      (d=192, 3 layers) with a learned positional grid, Sobel-gradient boundaries.
#   C: local-heavy: deeper high-resolution encoder stages, one narrow transformer layer, wider
#      ASPP branches and dilations (1, 6, 9, 12).
MEDLITENET_VARIANTS: dict[str, MedLiteNetConfig] = {
    "a": MedLiteNetConfig(),
    "b": MedLiteNetConfig(
        depths=(1, 2, 3, 1),
        embed_dim=192,
        transformer_depth=3,
        num_heads=6,
        mlp_ratio=2.0,
        pos_embed="learned",
        boundary_kernel="sobel",
    ),
    "c": MedLiteNetConfig(
        depths=(3, 4, 4, 1),
        embed_dim=96,
        transformer_depth=1,
        num_heads=4,
        aspp_dilations=(1, 6, 9, 12),
        aspp_branch_channels=96,
        decoder_channels=(128, 96, 48, 24),
    ),
}


def _config(variant: str, overrides: dict[str, Any]) -> MedLiteNetConfig:
    try:
        base = MEDLITENET_VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown MedLiteNet variant {variant!r}; choose one of {sorted(MEDLITENET_VARIANTS)}") from None
    fields = {f.name for f in dataclasses.fields(MedLiteNetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"unknown MedLiteNet option(s) {unknown}; valid options: {sorted(fields)}")
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(base, **tuples)


class _DecoderStage(nn.Module):
    """Upsample to the skip's size, concatenate, two 3x3 conv-BN-SiLU, optional BAA (Sec. III-F)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, boundary: str | None) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            ConvNormAct(in_channels + skip_channels, out_channels, 3, act_layer=nn.SiLU),
            ConvNormAct(out_channels, out_channels, 3, act_layer=nn.SiLU),
        )
        self.baa = BoundaryAwareAttention(out_channels, kernel=boundary) if boundary else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.conv(torch.cat([x, skip], dim=1))
        return self.baa(x) if self.baa is not None else x


class ContextSCSE(nn.Module):
    """ASPP and SCSE in parallel on the fused bottleneck (abstract, Sec. I-C): the ASPP branches (each with its
    1x1 projection) and the SCSE-recalibrated features are concatenated and fused by one 1x1 conv-BN-SiLU."""

    def __init__(self, channels: int, cfg: MedLiteNetConfig) -> None:
        super().__init__()
        self.aspp = ASPP(channels, cfg.aspp_branch_channels, cfg.aspp_dilations, first_branch_1x1=False,
                         image_pooling=True, branch_projection=cfg.aspp_projection_channels, activation=nn.SiLU)
        self.scse = scse(channels)
        self.fuse = ConvNormAct(self.aspp.out_channels + channels, cfg.aspp_out_channels, 1, act_layer=nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.aspp(x), self.scse(x)], dim=1))


class MedLiteNet(nn.Module):
    """MedLiteNet for any input size (strided convs round up; the decoder resizes to each skip).

    Training needs batches of 2 or more (BatchNorm in the ASPP image-pooling branch).

    Args:
        in_channels: image channels.
        num_classes: 1 for a sigmoid head (the paper), 2 for a softmax head.
        config: architecture settings; `MEDLITENET_VARIANTS[...]` holds the three variants.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, config: MedLiteNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or MedLiteNetConfig()
        cfg.validate()
        self.config = cfg
        self.stem = ConvNormAct(in_channels, cfg.stem_channels, 3, stride=2, act_layer=nn.SiLU)
        chans = [cfg.stem_channels, *cfg.widths]
        self.stages = nn.ModuleList(
            MBConvStage(chans[i], chans[i + 1], cfg.depths[i], stride=2, expansion=cfg.expansion) for i in range(4)
        )
        self.transformer = FeatureMapTransformer(
            cfg.widths[-1],
            cfg.embed_dim,
            cfg.transformer_depth,
            cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            pos_embed=cfg.pos_embed,  # type: ignore[arg-type]
            dropout=cfg.dropout,
        )
        self.fusion = LocalGlobalFusion(cfg.widths[-1], cfg.embed_dim)
        self.context = ContextSCSE(cfg.embed_dim, cfg)
        self.encoder_baa = BoundaryAwareAttention(
            cfg.aspp_out_channels, context_channels=cfg.embed_dim, kernel=cfg.boundary_kernel  # type: ignore[arg-type]
        )
        skips = [cfg.widths[2], cfg.widths[1], cfg.widths[0], cfg.stem_channels]
        ins = [cfg.aspp_out_channels, *cfg.decoder_channels[:3]]
        self.decoder = nn.ModuleList(
            _DecoderStage(ins[i], skips[i], cfg.decoder_channels[i], cfg.boundary_kernel if i < 3 else None)
            for i in range(4)
        )
        self.head = nn.Conv2d(cfg.decoder_channels[-1], num_classes, 1)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the convolutional encoder (stem + MBConv stages; the paper's ~1.8M)."""
        return [*self.stem.parameters(), *self.stages.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            # BatchNorm of the ASPP image-pooling branch sees one value per channel per image.
            raise ValueError(
                "MedLiteNet needs training batches of 2 or more (ASPP image-pooling BatchNorm); "
                "drop the last incomplete batch (drop_last) or use eval mode"
            )
        size = x.shape[-2:]
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        f_conv = feats[-1]
        f_trans = self.transformer(f_conv)
        y = self.context(self.fusion(f_conv, f_trans))
        y = self.encoder_baa(y, context=f_trans)
        for stage, skip in zip(self.decoder, reversed(feats[:-1])):
            y = stage(y, skip)
        # The 1x1 head commutes with bilinear upsampling, so classify at 1/2 size and upsample logits.
        return F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)


def _build(variant: str, in_channels: int, num_classes: int, overrides: dict[str, Any]) -> MedLiteNet:
    return MedLiteNet(in_channels, num_classes, _config(variant, overrides))


@register_model(
    "medlitenet",
    input_size=(3, 256, 256),
    preset="medlitenet",
    num_classes=1,
    paper=PAPER_FIGURES,
    description="MedLiteNet (variant A): MBConv encoder, bottleneck transformer fusion, ASPP, BAA, SCSE decoder",
)
def medlitenet(in_channels: int = 3, num_classes: int = 1, variant: str = "a", **overrides: Any) -> MedLiteNet:
    """MedLiteNet; `variant` picks "a" (default), "b" or "c"; keyword overrides change MedLiteNetConfig fields."""
    return _build(variant, in_channels, num_classes, overrides)


@register_model(
    "medlitenet_b",
    input_size=(3, 256, 256),
    preset="medlitenet",
    num_classes=1,
    paper={"params_max": 3_300_000, "params_note": "each variant < 3.3M (abstract)", "source": _SOURCE},
    description="MedLiteNet variant B (ensemble member): shallow encoder, 3-layer d=192 transformer, Sobel BAA",
)
def medlitenet_b(in_channels: int = 3, num_classes: int = 1, **overrides: Any) -> MedLiteNet:
    return _build("b", in_channels, num_classes, overrides)


@register_model(
    "medlitenet_c",
    input_size=(3, 256, 256),
    preset="medlitenet",
    num_classes=1,
    paper={"params_max": 3_300_000, "params_note": "each variant < 3.3M (abstract)", "source": _SOURCE},
    description="MedLiteNet variant C (ensemble member): deep encoder, 1-layer d=96 transformer, wide ASPP",
)
def medlitenet_c(in_channels: int = 3, num_classes: int = 1, **overrides: Any) -> MedLiteNet:
    return _build("c", in_channels, num_classes, overrides)


@register_model(
    "medlitenet_ensemble",
    input_size=(3, 256, 256),
    preset="medlitenet",
    num_classes=1,
    paper=ENSEMBLE_PAPER_FIGURES,
    description="Performance-weighted ensemble of MedLiteNet variants A, B, C (weights from validation Dice)",
)
def medlitenet_ensemble(
    in_channels: int = 3,
    num_classes: int = 1,
    variants: Sequence[str] = ("a", "b", "c"),
    weights: Sequence[float] | None = None,
) -> WeightedEnsemble:
    """Fresh members of the given variants; `weights` (e.g. validation Dice, normalised) default to equal.

    Train the members separately, then load their state dicts into `ensemble.members[i]` and pass
    `weights_from_scores(val_dice)`; training the ensemble as one model is possible but is not the
    paper's recipe.
    """
    members = [_build(v, in_channels, num_classes, {}) for v in variants]
    return WeightedEnsemble(members, weights if weights is not None else [1.0] * len(members))

"""SLSNet: skin lesion segmentation with a lightweight conditional GAN (Sarker et al., ESWA 2021).

`SLSNetGenerator` (registered as ``slsnet``) is the deployed segmentation network; `SLSNetDiscriminator` is
only needed for adversarial training and is not registered as a segmentation model.

Generator (Sec. 3.1-3.2, Fig. 1; channels @ side for a 128 x 128 input):

    multiscale block   input at 1, 1/2, 1/4, 1/8 -> 3x3 conv + CAM each -> bilinear up, mean     16 @ 128
    2 x down-attention 3x3 conv + BN + ReLU -> 2x2 max-pool -> PAM                     16 @ 64, 20 @ 32
    4 x FAM            non-bottleneck-1D + CAM                                                     20 @ 32
    down-attention     3x3 conv + BN + ReLU -> 2x2 max-pool -> PAM                                142 @ 16
    8 x FAM            dilations 2, 4, 8, 16 twice (ERFNet's schedule)                            142 @ 16
    bottleneck         non-bottleneck-1D -> CAM(.) + PAM(.)                                       142 @ 16
    2 x up group       3x3 stride-2 deconv + BN + ReLU -> PAM -> 2 FAMs (Dropout2d = z)  20 @ 32, 16 @ 64
    head               3x3 stride-2 deconv -> 1 channel of logits                                   1 @ 128

The paper gives no widths; 16 / 16 / 20 / 142 land on both of its figures as torch.utils.flop_counter
counts them (every product, attention included): 2.338M parameters (paper 2.35M) and 0.213 / 0.843 /
3.37 GMACs at 64 / 128 / 256 (paper 0.23 / 0.90 / 3.16, Table 7: 3.61 at 256).

The paper's MACs grow ~4x per doubling of the input side, so nothing in the model may grow faster: DANet's
N x N position attention (16x per doubling) would cost 0.3 G per PAM at the 1/2 stage of a 128 input
alone. Each PAM therefore attends over its input average-pooled to at most 8 x 8 context positions
(`pam_context=8`; exact DANet wherever the map is at most 8 x 8, e.g. the 1/8 stage of a 64 input;
`pam_context=None` restores full attention). Details and all measured numbers: docs/models/slsnet.md.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lesion_lightning.layers.danet import CAM, PAM
from lesion_lightning.layers.factorized import BN_EPS, FAM, NonBottleneck1D
from lesion_lightning.models.registry import register_model

_DEPTH = 8  # three 2x poolings: sides are padded to a multiple of 8


def _pam(channels: int, enabled: bool, reduction: int, context: int | None) -> nn.Module:
    return PAM(channels, reduction, context=context) if enabled else nn.Identity()


class _MultiScaleBlock(nn.Module):
    """Input at full size and downscaled by each factor; 3x3 conv (+ CAM) per scale; bilinear back; mean."""

    def __init__(self, in_channels: int, out_channels: int, factors: Sequence[int], use_cam: bool) -> None:
        super().__init__()
        self.factors = (1, *factors)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), CAM() if use_cam else nn.Identity())
            for _ in self.factors
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out = 0
        for factor, branch in zip(self.factors, self.branches):
            y = branch(F.avg_pool2d(x, factor) if factor > 1 else x)
            if factor > 1:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = out + y
        return out / len(self.factors)


class _DownAttention(nn.Module):
    """3x3 conv + BN + ReLU, 2x2 max-pool, then PAM (SLSNet's downsampling-attention layer)."""

    def __init__(self, in_channels: int, out_channels: int, use_pam: bool, pam_reduction: int, pam_context: int | None) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(2)
        self.pam = _pam(out_channels, use_pam, pam_reduction, pam_context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pam(self.pool(self.conv(x)))


class _UpAttention(nn.Module):
    """3x3 stride-2 deconvolution + BN + ReLU, PAM, then FAMs whose Dropout2d plays the noise z."""

    def __init__(
        self, in_channels: int, out_channels: int, fams: int, dropout: float, use_pam: bool, use_cam: bool, pam_reduction: int,
        pam_context: int | None,
    ) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )
        self.pam = _pam(out_channels, use_pam, pam_reduction, pam_context)
        self.fams = nn.Sequential(*(FAM(out_channels, dropout=dropout, use_cam=use_cam) for _ in range(fams)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fams(self.pam(self.up(x)))


class _DualAttentionBottleneck(nn.Module):
    """Factorised layer, then a CAM branch and a PAM branch summed (the last encoder stage).

    With only one attention kind enabled that branch alone is kept; with none, the factorised output.
    """

    def __init__(self, channels: int, use_pam: bool, use_cam: bool, pam_reduction: int, pam_context: int | None) -> None:
        super().__init__()
        self.factorized = NonBottleneck1D(channels)
        self.cam = CAM() if use_cam else None
        self.pam = PAM(channels, pam_reduction, context=pam_context) if use_pam else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.factorized(x)
        branches = [m(x) for m in (self.cam, self.pam) if m is not None]
        return sum(branches[1:], branches[0]) if branches else x


@register_model(
    "slsnet",
    input_size=(3, 128, 128),
    preset="slsnet",
    num_classes=1,
    paper={
        "params": 2_350_000,
        "gmacs": 0.90,
        "gmacs_by_size": {64: 0.23, 128: 0.90, 256: 3.16},
        "gmacs_256_table7": 3.61,
        "flops_note": (
            "MACs of the generator G only, at 64 / 128 / 256: 0.23 / 0.90 / 3.16 G (Table 5); Table 7 prints 3.61 "
            "at 256. Ours are torch.utils.flop_counter totals (every conv and attention product); see "
            "docs/models/slsnet.md. The discriminator D is not counted (the paper's 2.35M is the deployed G)."
        ),
        "source": "SLSNet (Sarker et al., ESWA 2021) Tables 3-7",
    },
    description=(
        "SLSNet generator G (GAN-trained; D not counted): multiscale block, FAM encoder-decoder with PAM/CAM; "
        "paper 2.35M params, 0.23 / 0.90 / 3.16 GMACs at 64 / 128 / 256"
    ),
)
class SLSNetGenerator(nn.Module):
    """SLSNet generator G: multiscale block, PAM/CAM-attended ERFNet-style encoder-decoder, 1-channel logits.

    Ablations of Table 6: ``use_pam=use_cam=multiscale=False`` is the baseline GAN generator (stacked
    factorised kernels; the multiscale block becomes a single 3x3 conv); then +PAM, +CAM, PAM+CAM without
    multiscale, and the full model (defaults). Any input size works (sides are padded to a multiple of 8);
    the paper uses 64, 128 (default) and 256. The decoder dropout (``dropout``) is the GAN noise z.
    ``pam_context`` is the side of the pooled key/value grid of every PAM (8; None = DANet's full N x N
    attention, whose cost grows 16x per doubling of the input side and overshoots the paper's MACs).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        widths: Sequence[int] = (16, 16, 20, 142),
        *,
        use_pam: bool = True,
        use_cam: bool = True,
        multiscale: bool = True,
        encoder_fams: int = 4,
        bottleneck_fams: int = 8,
        decoder_fams: int = 2,
        bottleneck_dilations: Sequence[int] = (2, 4, 8, 16),
        dropout: float = 0.3,
        encoder_dropout: float = 0.0,
        pam_reduction: int = 8,
        pam_context: int | None = 8,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"SLSNetGenerator needs in_channels >= 1 and num_classes >= 1, got {in_channels}, {num_classes}")
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"SLSNetGenerator widths must be 4 positive ints (multiscale, 1/2, 1/4, 1/8), got {tuple(widths)}")
        if not bottleneck_dilations or min(bottleneck_dilations) < 1:
            raise ValueError(f"SLSNetGenerator bottleneck_dilations must be positive ints, got {tuple(bottleneck_dilations)}")
        w0, w1, w2, w3 = widths
        self.in_channels = in_channels
        self.use_pam, self.use_cam, self.multiscale = use_pam, use_cam, multiscale

        self.stem = _MultiScaleBlock(in_channels, w0, (2, 4, 8) if multiscale else (), use_cam)
        self.down1 = _DownAttention(w0, w1, use_pam, pam_reduction, pam_context)
        self.down2 = _DownAttention(w1, w2, use_pam, pam_reduction, pam_context)
        self.encoder_fams = nn.Sequential(
            *(FAM(w2, dropout=encoder_dropout, use_cam=use_cam) for _ in range(encoder_fams))
        )
        self.down3 = _DownAttention(w2, w3, use_pam, pam_reduction, pam_context)
        self.bottleneck_fams = nn.Sequential(
            *(
                FAM(w3, dropout=encoder_dropout, dilation=bottleneck_dilations[i % len(bottleneck_dilations)], use_cam=use_cam)
                for i in range(bottleneck_fams)
            )
        )
        self.bottleneck = _DualAttentionBottleneck(w3, use_pam, use_cam, pam_reduction, pam_context)
        self.up1 = _UpAttention(w3, w2, decoder_fams, dropout, use_pam, use_cam, pam_reduction, pam_context)
        self.up2 = _UpAttention(w2, w1, decoder_fams, dropout, use_pam, use_cam, pam_reduction, pam_context)
        self.head = nn.ConvTranspose2d(w1, num_classes, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SLSNetGenerator expects input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % _DEPTH, (-w) % _DEPTH
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        x = self.stem(x)
        x = self.encoder_fams(self.down2(self.down1(x)))
        x = self.bottleneck(self.bottleneck_fams(self.down3(x)))
        x = self.up2(self.up1(x))
        return self.head(x)[..., :h, :w]


class SLSNetDiscriminator(nn.Module):
    """SLSNet discriminator D (Sec. 3.3): (image, mask) pair -> patch logits of shape (B, 1, H/8, W/8).

    Three 4x4 stride-2 convolutions (LeakyReLU 0.2; BN after the second and third, as in pix2pix) with a PAM
    after the second and a CAM after the third, then a 3x3 conv to one channel. The paper puts a sigmoid on
    that last layer; we return its logits so training can use BCEWithLogits (numerically safe, same loss).
    `mask` is a probability map in [0, 1]: the ground truth, or sigmoid of the generator's logits (keep the
    graph so the adversarial term reaches G). Not counted in the paper's 2.35M parameters (that is G).
    """

    def __init__(
        self,
        in_channels: int = 3,
        mask_channels: int = 1,
        base_width: int = 64,
        *,
        use_pam: bool = True,
        use_cam: bool = True,
        pam_reduction: int = 8,
        pam_context: int | None = 8,
    ) -> None:
        super().__init__()
        if min(in_channels, mask_channels, base_width) < 1:
            raise ValueError(
                "SLSNetDiscriminator needs positive in_channels, mask_channels and base_width, "
                f"got {in_channels}, {mask_channels}, {base_width}"
            )
        self.in_channels, self.mask_channels = in_channels, mask_channels
        w = base_width
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels + mask_channels, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
        self.conv2 = nn.Sequential(
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2, inplace=True),
            _pam(2 * w, use_pam, pam_reduction, pam_context),
        )
        self.conv3 = nn.Sequential(
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.LeakyReLU(0.2, inplace=True),
            CAM() if use_cam else nn.Identity(),
        )
        self.head = nn.Conv2d(4 * w, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"SLSNetDiscriminator expects image (B, {self.in_channels}, H, W), got {tuple(image.shape)}")
        expected = (image.shape[0], self.mask_channels, *image.shape[-2:])
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"SLSNetDiscriminator expects mask {expected} to match image {tuple(image.shape)}, got {tuple(mask.shape)}"
            )
        x = torch.cat([image, mask.to(image.dtype)], dim=1)
        return self.head(self.conv3(self.conv2(self.conv1(x))))


_LAYER_OPS = {torch.ops.aten.convolution, torch.ops.aten.mm, torch.ops.aten.addmm}


@torch.no_grad()
def count_macs_by_kind(model: nn.Module, *inputs: torch.Tensor) -> tuple[dict[str, int], Any]:
    """Run ``model(*inputs)`` under torch's FlopCounterMode; return (MACs split by kind, the output).

    ``layer_macs`` counts convolutions and linear layers only (what module-hook counters such as thop see;
    SLSNet's Table 6 looks counted that way). ``attention_macs`` is everything else FlopCounterMode counts
    (PAM's and CAM's products); ``macs`` is their sum (= count_flops / 2), the figure compared with the paper.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(*inputs)
    per_op = counter.get_flop_counts().get("Global", {})
    layer = sum(n for op, n in per_op.items() if op in _LAYER_OPS)
    total = sum(per_op.values())
    return {"macs": total // 2, "layer_macs": layer // 2, "attention_macs": (total - layer) // 2}, out


def slsnet_macs(model: nn.Module, input_size: tuple[int, int, int], *extra_inputs: torch.Tensor) -> dict[str, int]:
    """MACs of one forward pass at (C, H, W), batch 1, eval mode, split as in `count_macs_by_kind`.

    Counted on a copy of the model on the meta device (shapes only), so even 256 x 256, where PAM's N x N
    products are large, costs no compute. For the discriminator pass the (1, 1, H, W) mask as ``extra_inputs``.
    """
    meta_model = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(1, *input_size, device="meta")
    macs, _ = count_macs_by_kind(meta_model, x, *(t.to("meta") for t in extra_inputs))
    return macs

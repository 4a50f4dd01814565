"""UNet++ and DeepLabv3+ baselines from segmentation-models-pytorch (LANET's Tables 4-8 compare against them).

Both are built with `encoder_weights=None` (nothing is downloaded); pass `encoder_weights="imagenet"`
to opt into pretrained encoders when online. Encoders (see docs/models/unets.md for the choice):
    unetplusplus:  vgg16_bn  (34,635,298 params with 2 classes; LANET Table 4 lists 36.2 M for U-Net++)
    deeplabv3plus: resnet50  (26,677,842 params with 2 classes; not in LANET Table 4)
Inputs of any size are padded (reflect) to the multiple SMP needs and the output is cropped back.
"""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from lesion_lightning.layers.conv import pad_to_multiple
from lesion_lightning.models.registry import register_model

UNETPLUSPLUS_PAPER = {
    "params": 36_200_000,
    "gflops": 8.45,
    "memory_mb": 138.1,
    "layers": 116,
    "flops_note": (
        "LANET Table 4 (224x224, MAC = 2 FLOPs): 36.2 M parameters, 8.45 GFLOPs for U-Net++ (backbone not "
        "stated; 36.2 M is about what the original nested UNet++ has with 64-1024 widths). Ours is SMP's "
        "UnetPlusPlus with a vgg16_bn encoder, the closest SMP configuration (see docs/models/unets.md)."
    ),
    "source": "LANET (Khalaf et al., CMES 2026) Table 4; UNet++: Zhou et al., DLMIA 2018",
}

DEEPLABV3PLUS_PAPER = {
    "flops_note": "LANET reports DeepLabv3+ metrics (Tables 5-8, 10) but no parameter or FLOP count.",
    "source": "LANET (Khalaf et al., CMES 2026) Tables 5-8; DeepLabv3+: Chen et al., ECCV 2018",
}


class PaddedSegmentationModel(nn.Module):
    """Runs `net` on the input padded to a multiple of `divisor` and crops the logits back."""

    def __init__(self, net: nn.Module, divisor: int) -> None:
        super().__init__()
        self.net = net
        self.divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.divisor)
        return self.net(x)[..., :h, :w]


def _drop_unused_center(net: nn.Module, in_channels: int) -> None:
    # SMP (0.6) builds a 4.7M-parameter center block for vgg encoders that UnetPlusPlusDecoder.forward
    # never calls: dead weights inflate the count and break DDP (unused parameters). Check that it is
    # really unused before removing it, so a future SMP that calls it keeps it.
    center = getattr(getattr(net, "decoder", None), "center", None)
    if center is None or isinstance(center, nn.Identity):
        return
    called = []
    handle = center.register_forward_hook(lambda *_: called.append(True))
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, in_channels, 64, 64))
    finally:
        handle.remove()
        net.train(was_training)
    if not called:
        net.decoder.center = nn.Identity()


@register_model(
    "unetplusplus",
    input_size=(3, 224, 224),
    preset="lanet",
    num_classes=2,
    paper=UNETPLUSPLUS_PAPER,
    description="UNet++ (SMP UnetPlusPlus, vgg16_bn encoder, no pretrained weights)",
)
def unetplusplus(
    in_channels: int = 3,
    num_classes: int = 2,
    encoder_name: str = "vgg16_bn",
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> PaddedSegmentationModel:
    """SMP UnetPlusPlus; extra keyword arguments go to `smp.UnetPlusPlus`."""
    net = smp.UnetPlusPlus(
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=num_classes,
        **kwargs,
    )
    _drop_unused_center(net, in_channels)
    return PaddedSegmentationModel(net, 2 ** kwargs.get("encoder_depth", 5))


@register_model(
    "deeplabv3plus",
    input_size=(3, 224, 224),
    preset="lanet",
    num_classes=2,
    paper=DEEPLABV3PLUS_PAPER,
    description="DeepLabv3+ (SMP DeepLabV3Plus, resnet50 encoder, output stride 16, no pretrained weights)",
)
def deeplabv3plus(
    in_channels: int = 3,
    num_classes: int = 2,
    encoder_name: str = "resnet50",
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> PaddedSegmentationModel:
    """SMP DeepLabV3Plus; extra keyword arguments go to `smp.DeepLabV3Plus`."""
    net = smp.DeepLabV3Plus(
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=num_classes,
        **kwargs,
    )
    # SMP rejects sides not divisible by the encoder's total stride (32 for depth-5 encoders).
    return PaddedSegmentationModel(net, 2 ** kwargs.get("encoder_depth", 5))

"""The U-Net of Aksoy (2025), "Skin lesion segmentation using U-Net for automated dermatological image analysis".

As in the authors' Keras code (github Serurays/Skin_Lesion_Segmentation, unet.py): three encoder
levels of two 3x3 'same' conv + ReLU (64 -> 128 -> 256), a 512-channel bottleneck, 2x2 stride-2
transposed convs (no activation), concat([skip, up]), two 3x3 conv + ReLU per decoder level, a 1x1
conv to one channel (sigmoid applied by the task). No BatchNorm, no dropout; Keras' default
Glorot-uniform weights and zero biases. 7,697,345 parameters. The code trains at 128x128 (the paper
text says 256x256); the registry keeps 128.
"""

from __future__ import annotations

from lesion_lightning.models.registry import register_model
from lesion_lightning.models.unet import UNet

PAPER_FIGURES = {
    "official_code_params": 7_697_345,
    "official_code_gflops": 18.4,
    "dice": 0.89,
    "jaccard": 0.82,
    "sensitivity": 0.915,
    "flops_note": (
        "The paper prints no parameter or FLOP count; 7,697,345 parameters and 18.4 GFLOPs at 128x128 "
        "(torch FlopCounterMode, MAC = 2 FLOPs) are measured on the authors' code. Dice/Jaccard/sensitivity: "
        "ISIC 2018, abstract."
    ),
    "source": "Aksoy (2025) abstract and Sec. 7; code github Serurays/Skin_Lesion_Segmentation",
}


@register_model(
    "unet_aksoy",
    input_size=(3, 128, 128),
    preset="unet_aksoy",
    num_classes=1,
    paper=PAPER_FIGURES,
    description="U-Net of the U-Net paper (Aksoy 2025): 64-128-256, 512 bottleneck, no BN (7,697,345 params)",
)
def unet_aksoy(in_channels: int = 3, num_classes: int = 1, init: str = "glorot") -> UNet:
    """Aksoy's Keras U-Net; any input size (padded to a multiple of 8, cropped back)."""
    return UNet(in_channels, num_classes, (64, 128, 256, 512), batch_norm=False, dropout=0.0, init=init)

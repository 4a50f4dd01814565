"""Concurrent spatial and channel squeeze-and-excitation (scSE, Roy et al. MICCAI 2018).

Re-exported from segmentation_models_pytorch so every model uses the same implementation.
"""

from __future__ import annotations

from segmentation_models_pytorch.base.modules import SCSEModule

__all__ = ["SCSEModule", "scse"]


def scse(channels: int, reduction: int = 16, min_hidden: int = 8) -> SCSEModule:
    """smp's SCSE; the channel squeeze keeps >= `min_hidden` units on narrow layers.

    With reduction 16 a 16- or 32-channel layer would squeeze to 1-2 ReLU units, which can all be
    dead at initialisation and then never train.
    """
    if channels < 1:
        raise ValueError(f"SCSE needs at least one channel, got {channels}")
    return SCSEModule(channels, reduction=max(1, min(reduction, channels // max(1, min_hidden))))

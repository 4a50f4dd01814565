"""How a model's output head reads as a lesion probability: a 1-channel sigmoid head or a 2-channel
softmax head (channel 1 = lesion). Shared by training, inference, export and ensembles."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LesionLogit", "lesion_probabilities"]


def _check_head(channels: int, who: str) -> None:
    if channels not in (1, 2):
        raise ValueError(f"{who}: expected a 1-channel (sigmoid) or 2-channel (softmax) head, got {channels} channels")


def lesion_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) lesion probabilities from a sigmoid head (1 channel) or a softmax head (2 channels)."""
    _check_head(logits.shape[1], "lesion probabilities")
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:2]


class LesionLogit(nn.Module):
    """A network as a 1-channel lesion-logit model: a 2-channel softmax head [z0, z1] becomes
    z1 - z0 (softmax(z)[1] == sigmoid(z1 - z0), exactly), a 1-channel head passes through."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        _check_head(logits.shape[1], "ensemble member")
        if logits.shape[1] == 1:
            return logits
        return logits[:, 1:2] - logits[:, 0:1]

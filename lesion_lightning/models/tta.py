"""Test-time augmentation for any segmentation model (MedLiteNet Sec. I-C: six-fold TTA).

Each view (flips and 90-degree rotations) is predicted, mapped back to the input orientation and
the **probabilities** are averaged; the wrapper returns the logits of that average, so it is a
drop-in replacement for the model (the task applies the same sigmoid/softmax as without TTA).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

__all__ = [
    "TTA_TRANSFORMS",
    "TTAWrapper",
    "apply_transform",
    "invert_transform",
    "logits_from_probabilities",
    "probabilities_from_logits",
]

Activation = Literal["auto", "sigmoid", "softmax"]

TTA_TRANSFORMS: tuple[str, ...] = ("identity", "hflip", "vflip", "hvflip", "rot90", "rot270")

# name -> (forward, inverse) on the last two (H, W) dimensions; rot90 swaps H and W, so
# non-square inputs are rotated, predicted at W x H and rotated back.
_OPS = {
    "identity": (lambda t: t, lambda t: t),
    "hflip": (lambda t: t.flip(-1), lambda t: t.flip(-1)),
    "vflip": (lambda t: t.flip(-2), lambda t: t.flip(-2)),
    "hvflip": (lambda t: t.flip(-2, -1), lambda t: t.flip(-2, -1)),
    "rot90": (lambda t: torch.rot90(t, 1, (-2, -1)), lambda t: torch.rot90(t, -1, (-2, -1))),
    "rot270": (lambda t: torch.rot90(t, -1, (-2, -1)), lambda t: torch.rot90(t, 1, (-2, -1))),
}


def _check_name(name: str) -> None:
    if name not in _OPS:
        raise ValueError(f"unknown TTA transform {name!r}; choose from {list(_OPS)}")


def apply_transform(x: torch.Tensor, name: str) -> torch.Tensor:
    """Apply the named view to the spatial dims of `x`."""
    _check_name(name)
    return _OPS[name][0](x)


def invert_transform(y: torch.Tensor, name: str) -> torch.Tensor:
    """Map a prediction of the named view back to the original orientation."""
    _check_name(name)
    return _OPS[name][1](y)


def _resolve(activation: Activation, channels: int) -> str:
    if activation == "auto":
        return "sigmoid" if channels == 1 else "softmax"
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be 'auto', 'sigmoid' or 'softmax', got {activation!r}")
    return activation


def probabilities_from_logits(logits: torch.Tensor, activation: Activation = "auto") -> torch.Tensor:
    """Sigmoid for a 1-channel head, softmax over channels otherwise ("auto"); computed in float32."""
    logits = logits.float()
    if _resolve(activation, logits.shape[1]) == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def logits_from_probabilities(probs: torch.Tensor, activation: Activation = "auto", eps: float = 1e-6) -> torch.Tensor:
    """Inverse of `probabilities_from_logits`: logit(p) for sigmoid, log(p) for softmax (clamped by eps).

    log-probabilities are valid softmax logits: softmax(log p) = p when p sums to 1 over channels.
    """
    probs = probs.float()
    if _resolve(activation, probs.shape[1]) == "sigmoid":
        return torch.logit(probs, eps=eps)
    return torch.log(probs.clamp_min(eps))


class TTAWrapper(nn.Module):
    """Average the probabilities of `model` over test-time views; returns logits of the average.

    Args:
        model: any segmentation model returning (B, C, H, W) logits at the input size.
        transforms: views to average (default: identity, h-flip, v-flip, both flips, rot90, rot270).
        activation: "auto" (sigmoid for 1 channel, softmax for more), "sigmoid" or "softmax".
        eps: probability clamp before converting back to logits (keeps them finite).
    """

    def __init__(
        self,
        model: nn.Module,
        transforms: Sequence[str] = TTA_TRANSFORMS,
        activation: Activation = "auto",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if isinstance(transforms, str):
            transforms = (transforms,)
        transforms = tuple(transforms)
        if not transforms:
            raise ValueError("TTAWrapper needs at least one transform")
        for name in transforms:
            _check_name(name)
        if len(set(transforms)) != len(transforms):
            raise ValueError(f"TTA transforms must not repeat, got {list(transforms)}")
        _resolve(activation, 1)
        self.model = model
        self.transforms = transforms
        self.activation = activation
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        out_dtype = x.dtype
        for name in self.transforms:
            logits = self.model(apply_transform(x, name))
            out_dtype = logits.dtype
            probs = invert_transform(probabilities_from_logits(logits, self.activation), name)
            if probs.shape[-2:] != x.shape[-2:]:
                raise ValueError(
                    f"TTA view {name!r}: the model returned {tuple(probs.shape[-2:])} after mapping back, "
                    f"expected the input size {tuple(x.shape[-2:])}"
                )
            total = probs if total is None else total + probs
        assert total is not None
        mean = total / len(self.transforms)
        return logits_from_probabilities(mean, self.activation, self.eps).to(out_dtype)

    def extra_repr(self) -> str:
        return f"transforms={list(self.transforms)}, activation={self.activation!r}"

"""Performance-weighted ensemble (MedLiteNet: three variants weighted by validation Dice).

The ensemble averages the members' **probabilities** with weights that sum to 1 and returns the
logits of that average, so it trains, validates and predicts through the same task as one model.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lesion_lightning.models.tta import Activation, logits_from_probabilities, probabilities_from_logits

__all__ = ["WeightedEnsemble", "weights_from_scores"]


def weights_from_scores(scores: Sequence[float]) -> list[float]:
    """Normalise non-negative scores (e.g. validation Dice per member) to weights summing to 1."""
    values = [float(s) for s in scores]
    if not values:
        raise ValueError("ensemble weights: need at least one score")
    bad = [s for s in values if not math.isfinite(s) or s < 0]
    if bad:
        raise ValueError(f"ensemble weights: scores must be finite and >= 0, got {values}")
    total = sum(values)
    if total <= 0:
        raise ValueError(f"ensemble weights: scores sum to zero, got {values}")
    return [s / total for s in values]


class WeightedEnsemble(nn.Module):
    """Weighted mean of member probabilities, returned as logits (clamped by eps).

    Args:
        members: models returning logits of the same shape.
        weights: one non-negative weight per member (e.g. validation Dice); normalised to sum 1.
        activation: "auto" (sigmoid for a 1-channel head, softmax otherwise), "sigmoid" or "softmax".
        eps: probability clamp before converting back to logits.
    """

    weights: torch.Tensor

    def __init__(
        self,
        members: Sequence[nn.Module],
        weights: Sequence[float],
        activation: Activation = "auto",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("WeightedEnsemble needs at least one member")
        weights = list(weights)
        if len(weights) != len(members):
            raise ValueError(f"WeightedEnsemble: {len(members)} members but {len(weights)} weights")
        self.members = nn.ModuleList(members)
        # A buffer so the weights travel with the state dict (checkpoints of the ensemble).
        self.register_buffer("weights", torch.tensor(weights_from_scores(weights), dtype=torch.float32))
        self.activation = activation
        self.eps = eps

    def set_weights(self, scores: Sequence[float]) -> None:
        """Replace the weights by normalised `scores` (e.g. after measuring each member's val Dice)."""
        if len(scores) != len(self.members):
            raise ValueError(f"WeightedEnsemble: {len(self.members)} members but {len(scores)} scores")
        self.weights.copy_(torch.tensor(weights_from_scores(scores)))

    def member_probabilities(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's probabilities (float32), in member order."""
        return [probabilities_from_logits(m(x), self.activation) for m in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        out_dtype = x.dtype
        for i, member in enumerate(self.members):
            logits = member(x)
            out_dtype = logits.dtype
            p = probabilities_from_logits(logits, self.activation) * self.weights[i]
            if total is not None and p.shape != total.shape:
                raise ValueError(f"WeightedEnsemble: member {i} returned {tuple(p.shape)}, member 0 {tuple(total.shape)}")
            total = p if total is None else total + p
        assert total is not None
        return logits_from_probabilities(total, self.activation, self.eps).to(out_dtype)

    def extra_repr(self) -> str:
        return f"weights={[round(w, 4) for w in self.weights.tolist()]}"

"""Segmentation losses of the papers, as a registry of composable terms.

Every loss takes raw logits and a {0, 1} target and returns a scalar:

* logits (B, 1, H, W) from a sigmoid head, or (B, 2, H, W) from a softmax head (LANET), whose lesion
  probability is softmax channel 1. softmax([z0, z1])[1] == sigmoid(z1 - z0), so a 2-channel head is
  handled exactly through the lesion logit z1 - z0 (numerically stable for BCE);
* target (B, 1, H, W) or (B, H, W), float or integer, values in {0, 1}.

With p the lesion probability and g the target, summed over pixels:

* `bce`: mean binary cross-entropy (segmentation-models-pytorch `SoftBCEWithLogitsLoss`, which without
  label smoothing is exactly BCE on logits).
* `dice`: 1 - (2 sum(g p) + smooth) / (sum g + sum p + smooth), smooth = 1 by default (MedLiteNet
  eq. 10, U-Net paper eq. 2, SCSONet eq. 10). `per_image=False` sums over the whole batch (the Keras
  U-Net code flattens the batch); `per_image=True` takes the loss per image and averages. Our own
  code: smp's `DiceLoss` zeroes the loss of a batch whose target is empty, which the papers do not.
* `jaccard`: SLSNet eq. 9, 1 - sum(g p) / (sum g^2 + sum p^2 - sum g p), no smoothing, per image
  then averaged (eq. 7 takes its expectation over samples). Our own code: smp's `JaccardLoss` uses
  sum g + sum p (not squared), a different function for soft p.
* `l1`: mean |p - g| (SLSNet's L1 term).
* `ce`: two-class cross-entropy of a 2-channel softmax head (torch `cross_entropy`).
* `bce_dice`: bce_weight * bce + dice_weight * dice; defaults 1/1 (SCSONet; U-Net's BCE + (1 - Dice));
  MedLiteNet uses 0.5/0.5.
* `deep_supervision`: a loss on the main output plus weighted copies of it on a model's auxiliary outputs
  (EGE-UNet's official GT_BceDiceLoss: bce_dice + 0.1..0.5 x bce_dice on its five masks, deepest first).
  The task asks the model for them (`model(x, return_aux=True)`) when the loss has `uses_aux`.

Specs for `build_loss`: a name (`"bce_dice"`), a dict (`{"name": "bce_dice", "bce_weight": 0.5,
"dice_weight": 0.5}`), or a list of weighted terms summed (`[{"name": "bce"}, {"name": "l1",
"weight": 0.1}, {"name": "jaccard", "weight": 0.5}]`, SLSNet's generator terms without the
adversarial one). After each call, `loss.last_terms` maps each term's name to its detached,
unweighted value, for logging as `train/loss_<name>`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import SoftBCEWithLogitsLoss
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "register_loss",
    "build_loss",
    "SegmentationLoss",
    "BCELoss",
    "DiceLoss",
    "BCEDiceLoss",
    "JaccardLoss",
    "L1Loss",
    "CrossEntropyLoss",
    "CompositeLoss",
    "DeepSupervisionLoss",
    "lesion_logit",
]

LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = cls
        cls.loss_name = name
        return cls

    return decorator


def _check_target(logits: Tensor, target: Tensor) -> Tensor:
    if logits.ndim != 4 or logits.shape[1] not in (1, 2):
        raise ValueError(
            f"loss: logits must be (B,1,H,W) (sigmoid head) or (B,2,H,W) (softmax head), got {tuple(logits.shape)}"
        )
    if target.ndim == 3:
        target = target.unsqueeze(1)
    if target.ndim != 4 or target.shape[1] != 1 or target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]:
        raise ValueError(
            f"loss: target must be (B,1,H,W) or (B,H,W) matching logits {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    return target.float()


def lesion_logit(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(B,1,H,W) float32 lesion logit and target; a 2-channel head gives z1 - z0 (= softmax channel 1)."""
    target = _check_target(logits, target)
    logits = logits.float()
    if logits.shape[1] == 2:
        logits = logits[:, 1:2] - logits[:, 0:1]
    return logits, target


class SegmentationLoss(nn.Module):
    """Base class: `forward(logits, target)` -> scalar, and `last_terms` for logging."""

    loss_name = "loss"

    def __init__(self) -> None:
        super().__init__()
        self.last_terms: dict[str, Tensor] = {}

    def compute(self, logit: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logit, target = lesion_logit(logits, target)
        value = self.compute(logit, target)
        self.last_terms = {self.loss_name: value.detach()}
        return value


@register_loss("bce")
class BCELoss(SegmentationLoss):
    """Mean binary cross-entropy on logits (smp `SoftBCEWithLogitsLoss`, no smoothing, no ignore index)."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        pw = None if pos_weight is None else torch.tensor([float(pos_weight)])
        self.bce = SoftBCEWithLogitsLoss(ignore_index=None, pos_weight=pw)

    def compute(self, logit: Tensor, target: Tensor) -> Tensor:
        return self.bce(logit, target)


def _sum_dims(per_image: bool) -> tuple[int, ...]:
    return (1, 2, 3) if per_image else (0, 1, 2, 3)


@register_loss("dice")
class DiceLoss(SegmentationLoss):
    """1 - (2 sum(g p) + smooth) / (sum g + sum p + smooth); over the batch, or per image then averaged."""

    def __init__(self, smooth: float = 1.0, per_image: bool = False) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"dice loss: smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.per_image = bool(per_image)

    def compute(self, logit: Tensor, target: Tensor) -> Tensor:
        p = torch.sigmoid(logit)
        dims = _sum_dims(self.per_image)
        inter = (p * target).sum(dims)
        den = p.sum(dims) + target.sum(dims) + self.smooth
        # den == 0 only with smooth = 0, an empty target and p == 0 exactly: a perfect prediction.
        dice = torch.where(den > 0, (2 * inter + self.smooth) / den.clamp_min(1e-12), torch.ones_like(den))
        return (1 - dice).mean()


@register_loss("jaccard")
class JaccardLoss(SegmentationLoss):
    """SLSNet eq. 9: 1 - sum(g p) / (sum g^2 + sum p^2 - sum g p), per image (default) then averaged."""

    def __init__(self, per_image: bool = True, eps: float = 1e-7) -> None:
        super().__init__()
        self.per_image = bool(per_image)
        self.eps = float(eps)

    def compute(self, logit: Tensor, target: Tensor) -> Tensor:
        p = torch.sigmoid(logit)
        dims = _sum_dims(self.per_image)
        inter = (target * p).sum(dims)
        den = (target * target).sum(dims) + (p * p).sum(dims) - inter
        # eps only guards 0/0 (empty target with p underflowing to 0); it is not a smoothing term.
        return (1 - inter / den.clamp_min(self.eps)).mean()


@register_loss("l1")
class L1Loss(SegmentationLoss):
    """Mean absolute difference between the lesion probability and the target."""

    def compute(self, logit: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(torch.sigmoid(logit), target)


@register_loss("ce")
class CrossEntropyLoss(SegmentationLoss):
    """Two-class cross-entropy of a (B,2,H,W) softmax head; class 1 is lesion."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = _check_target(logits, target)
        if logits.shape[1] != 2:
            raise ValueError(
                "loss 'ce' needs a 2-channel softmax head (B,2,H,W), got "
                f"{logits.shape[1]} channel(s); use 'bce' for a 1-channel sigmoid head"
            )
        value = F.cross_entropy(logits.float(), target[:, 0].round().long())
        self.last_terms = {self.loss_name: value.detach()}
        return value


class CompositeLoss(nn.Module):
    """Weighted sum of loss terms; `last_terms` merges the terms' (unweighted) parts."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("loss: a composite loss needs at least one term")
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList([t for _, t in terms])
        self.last_terms: dict[str, Tensor] = {}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for weight, term in zip(self.weights, self.terms):
            value = term(logits, target)
            total = weight * value if total is None else total + weight * value
            for name, part in getattr(term, "last_terms", {}).items():
                key, n = name, 2
                while key in parts:  # the same loss twice in one spec: loss_dice, loss_dice_2
                    key, n = f"{name}_{n}", n + 1
                parts[key] = part
        self.last_terms = parts
        assert total is not None
        return total


@register_loss("bce_dice")
class BCEDiceLoss(CompositeLoss):
    """bce_weight * BCE + dice_weight * soft Dice loss (logged as `bce` and `dice`)."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0,
                 per_image: bool = False) -> None:
        super().__init__([(bce_weight, BCELoss()), (dice_weight, DiceLoss(smooth=smooth, per_image=per_image))])


@register_loss("deep_supervision")
class DeepSupervisionLoss(nn.Module):
    """`loss(main) + sum_i aux_weights[i] * loss(aux_i)`; without aux outputs (a TTA evaluation) the main
    term only. Logged parts: the main loss's terms, plus `aux` (the weighted auxiliary sum)."""

    uses_aux = True

    def __init__(self, loss: Any = "bce_dice", aux_weights: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5)) -> None:
        super().__init__()
        if isinstance(loss, Mapping) and loss.get("name") == "deep_supervision":
            raise ValueError("loss 'deep_supervision': its `loss` cannot itself be deep_supervision")
        self.loss = build_loss(loss)
        self.aux_weights = [float(w) for w in aux_weights]
        self.last_terms: dict[str, Tensor] = {}

    def forward(self, logits: Tensor, target: Tensor, aux: Sequence[Tensor] | None = None) -> Tensor:
        total = self.loss(logits, target)
        parts = dict(getattr(self.loss, "last_terms", {}))
        if aux is not None:
            if len(aux) != len(self.aux_weights):
                raise ValueError(f"loss 'deep_supervision': the model gives {len(aux)} auxiliary outputs but "
                                 f"aux_weights has {len(self.aux_weights)} ({self.aux_weights})")
            aux_total = sum(w * self.loss(a, target) for w, a in zip(self.aux_weights, aux))
            parts["aux"] = aux_total.detach()
            total = total + aux_total
        self.last_terms = parts
        return total


def _registry_names() -> str:
    return ", ".join(sorted(LOSSES))


def _make(name: Any, options: Mapping[str, Any]) -> nn.Module:
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; registered losses: {_registry_names()}")
    cls = LOSSES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"loss {name!r}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}"
        )
    return cls(**options)


def _term(spec: Any) -> tuple[float, nn.Module]:
    if isinstance(spec, str):
        return 1.0, _make(spec, {})
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "name" not in options:
            raise ValueError(f"loss spec {spec!r} has no 'name'; registered losses: {_registry_names()}")
        name = options.pop("name")
        weight = options.pop("weight", 1.0)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"loss {name!r}: weight must be a number, got {weight!r}") from None
        return weight, _make(name, options)
    raise ValueError(f"loss spec must be a name, a dict with 'name', or a list of those; got {spec!r}")


def build_loss(spec: str | Mapping[str, Any] | Sequence[Any] | nn.Module) -> nn.Module:
    """A loss module from a name, a `{"name": ..., <options>, "weight": w}` dict, or a list of them (summed)."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, (str, Mapping)):
        weight, loss = _term(spec)
        return loss if weight == 1.0 else CompositeLoss([(weight, loss)])
    if isinstance(spec, Sequence):
        return CompositeLoss([_term(s) for s in spec])
    raise ValueError(f"loss spec must be a name, a dict with 'name', or a list of those; got {spec!r}")

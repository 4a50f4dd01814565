"""A trained model's preprocessing: working size and transform set (`data.augment`), and how it normalises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lesion_lightning.data.sizes import size_or_none
from lesion_lightning.data.transforms import DEFAULT_SIZES, TRANSFORM_SET_NAMES, TRANSFORM_SETS, build_transforms


def normalisation_info(transform_set: str) -> dict[str, Any]:
    """How a transform set normalises images (for model cards and deployment outside Python): its
    `TransformSet`'s normalisation, the same object the training transforms are built from."""
    return {"transform_set": transform_set, **TRANSFORM_SETS[transform_set].normalisation.as_dict()}


def card_transform_set(normalisation: dict[str, Any]) -> str | None:
    """The transform set a model card's `input.normalisation` names (cards before 2026-12 call it `preset`)."""
    return normalisation.get("transform_set", normalisation.get("preset"))


@dataclass(frozen=True)
class Preprocessing:
    """Working size (H, W) and transform set (its normalisation) of a trained model."""

    image_size: tuple[int, int]
    transform_set: str = "none"
    source: str = "default"  # where the values came from (for messages and model cards)

    def transform(self):
        return build_transforms(self.transform_set, self.image_size, train=False, seed=0)

    def as_dict(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "layout": "NCHW float32 RGB",
                "resize": "area when shrinking, bilinear when enlarging", "source": self.source,
                "normalisation": normalisation_info(self.transform_set)}


def resolve_preprocessing(ckpt: dict[str, Any], run_config: dict[str, Any], model_name: str) -> Preprocessing:
    from lesion_lightning.models import get_model_spec

    for source, data in (("checkpoint datamodule hyperparameters", ckpt.get("datamodule_hyper_parameters")),
                         ("run config.yaml", run_config.get("data"))):
        if isinstance(data, dict) and size_or_none(data.get("image_size")) is not None:
            transform_set = data.get("augment") or "none"
            if transform_set not in TRANSFORM_SET_NAMES:
                raise ValueError(f"{source}: augment: unknown transform set {transform_set!r}")
            return Preprocessing(size_or_none(data["image_size"]), transform_set, source)
    try:
        _, h, w = get_model_spec(model_name).input_size
    except KeyError:
        h, w = DEFAULT_SIZES["none"]
    return Preprocessing((int(h), int(w)), "none", "model's paper input size (no data config found)")



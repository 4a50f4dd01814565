"""A trained model's preprocessing: working size and normalisation preset, and how it normalises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lesion_lightning.data.sizes import size_or_none
from lesion_lightning.data.transforms import DEFAULT_SIZES, PRESET_SPECS, PRESETS, build_transforms


def normalisation_info(preset: str) -> dict[str, Any]:
    """How a preset normalises images (for model cards and deployment outside Python): its `PresetSpec`'s
    normalisation, the same object the training transforms are built from."""
    return {"preset": preset, **PRESET_SPECS[preset].normalisation.as_dict()}


@dataclass(frozen=True)
class Preprocessing:
    """Working size (H, W) and normalisation preset of a trained model."""

    image_size: tuple[int, int]
    preset: str = "none"
    source: str = "default"  # where the values came from (for messages and model cards)

    def transform(self):
        return build_transforms(self.preset, self.image_size, train=False, seed=0)

    def as_dict(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "layout": "NCHW float32 RGB",
                "resize": "area when shrinking, bilinear when enlarging", "source": self.source,
                "normalisation": normalisation_info(self.preset)}


def resolve_preprocessing(ckpt: dict[str, Any], run_config: dict[str, Any], model_name: str) -> Preprocessing:
    from lesion_lightning.models import get_model_spec

    for source, data in (("checkpoint datamodule hyperparameters", ckpt.get("datamodule_hyper_parameters")),
                         ("run config.yaml", run_config.get("data"))):
        if isinstance(data, dict) and size_or_none(data.get("image_size")) is not None:
            preset = data.get("augment") or "none"
            if preset not in PRESETS:
                raise ValueError(f"{source}: unknown augment preset {preset!r}")
            return Preprocessing(size_or_none(data["image_size"]), preset, source)
    try:
        _, h, w = get_model_spec(model_name).input_size
    except KeyError:
        h, w = DEFAULT_SIZES["none"]
    return Preprocessing((int(h), int(w)), "none", "model's paper input size (no data config found)")



"""Model registry: `create_model("lanet")` builds any architecture by name (timm-style).

Every entry carries the paper's input size, the name of its training preset and the figures its
paper prints, so `lesion-lightning models` can show ours beside theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # (C, H, W) at which the paper reports its figures
    preset: str  # the paper's recipe (training/presets.py: its experiment YAML, whose data.augment names the transform set)
    num_classes: int = 1  # 1 = sigmoid head, 2 = softmax head (lesion/background)
    paper: dict[str, Any] = field(default_factory=dict)  # e.g. {"params": 846786, "gflops": 4.22, "source": "..."}
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def _first_doc_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def register_model(
    name: str,
    *,
    input_size: tuple[int, int, int],
    preset: str,
    num_classes: int = 1,
    paper: dict[str, Any] | None = None,
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or factory function under `name`."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            input_size=tuple(input_size),
            preset=preset,
            num_classes=num_classes,
            paper=dict(paper or {}),
            description=description or _first_doc_line(builder),
        )
        return builder

    return decorator


def _ensure_loaded() -> None:
    # Importing the package registers every architecture module.
    import lesion_lightning.models  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name; keyword arguments override the paper's defaults."""
    spec = get_model_spec(name)
    try:
        return spec.builder(**kwargs)
    except TypeError as err:
        raise TypeError(f"cannot build model {name!r} with {kwargs}: {err}") from err

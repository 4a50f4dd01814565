"""What every export shares: the probability model it writes, and the checks against PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_OPSET = 17
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An export that failed or does not reproduce the PyTorch model."""


# -- the exported module -------------------------------------------------------------------------
def probability_model(model: nn.Module) -> nn.Module:
    """The architecture followed by its head's activation: (N, 3, H, W) -> (N, 1, H, W) probabilities."""
    from torch import nn

    from lesion_lightning.models.lesion_head import lesion_probabilities

    class LesionProbabilities(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, image):
            return lesion_probabilities(self.net(image))

    return LesionProbabilities(model).eval()


def _second_shape(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A batch of 2 at another spatial size (multiples of 32 keep every encoder's stride happy)."""
    h, w = size
    return (2, 3, max(32, (h + h // 2) // 32 * 32), max(32, (w // 2) // 32 * 32 if w >= 96 else w * 2))


def _reference(module: nn.Module, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    import torch

    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    try:
        with torch.no_grad():
            return x, module(x)
    except RuntimeError:
        return None  # the model itself does not run at this shape: nothing to compare there


def max_diff(a: Any, b: torch.Tensor) -> float:
    import numpy as np

    a = np.asarray(a)
    if a.shape != tuple(b.shape):
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.numpy().astype(np.float64)).max())


def check_shapes(module: nn.Module, size: tuple[int, int]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """[(name, input, PyTorch output)]: the export shape, batch 2 at that size, batch 2 at another size."""
    h, w = size
    checks = [("export shape", (1, 3, h, w), 0), ("batch 2", (2, 3, h, w), 1),
              ("other size", _second_shape(size), 2)]
    out = []
    for name, shape, seed in checks:
        ref = _reference(module, shape, seed)
        if ref is not None:
            out.append((f"{name} {tuple(shape)}", *ref))
        elif name == "export shape":
            raise ExportError(f"the model does not run at input size {h}x{w}")
    return out


def short_error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"

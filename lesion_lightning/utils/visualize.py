"""Drawing helpers shared by the prediction-grid callback and the predict command.

Colours are RGB: prediction contour green, ground-truth contour red.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

PRED_COLOR = (0, 255, 0)
GT_COLOR = (255, 0, 0)


def to_display_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A normalised image, (3,H,W) tensor/array or (H,W,3) array, as HxWx3 uint8 min-max rescaled to [0, 255].

    Training images are normalised per transform set (ImageNet mean/std, [0,1], ...); a per-image min-max
    rescale shows any of them without knowing the set.
    """
    arr = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"to_display_uint8: expected a (3,H,W) or (H,W,3) image, got shape {tuple(arr.shape)}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _binary(mask: np.ndarray | torch.Tensor, shape: tuple[int, int], what: str) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    arr = np.squeeze(arr)
    if arr.shape != shape:
        raise ValueError(f"overlay_contours: {what} mask has shape {arr.shape}, image is {shape}")
    # Float masks may be probabilities: `binarize` at 0.5; integer masks may be {0,1} or {0,255}.
    from lesion_lightning.metrics import binarize

    binary = binarize(arr, 0.5) if np.issubdtype(arr.dtype, np.floating) else arr > 0
    return binary.astype(np.uint8)


def overlay_contours(image: np.ndarray, pred: np.ndarray | torch.Tensor | None = None,
                     gt: np.ndarray | torch.Tensor | None = None, thickness: int | None = None) -> np.ndarray:
    """Copy of `image` (HxWx3 uint8, or HxW grey) with the contour of `pred` in green and of `gt` in red.

    The prediction is drawn last so it stays visible where both contours coincide. `thickness`
    defaults to about 1 px per 256 px of the shorter side.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"overlay_contours: expected an HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")
    out = np.ascontiguousarray(img.copy())
    shape = out.shape[:2]
    if thickness is None:
        thickness = max(1, round(min(shape) / 256))
    for mask, color, what in ((gt, GT_COLOR, "ground-truth"), (pred, PRED_COLOR, "prediction")):
        if mask is None:
            continue
        contours, _ = cv2.findContours(_binary(mask, shape, what), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, color, thickness)
    return out


def make_grid(images: Sequence[np.ndarray], ncols: int = 4, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile HxWx3 uint8 images row by row into one image (smaller tiles are padded to the largest)."""
    if not images:
        raise ValueError("make_grid: no images")
    if ncols < 1:
        raise ValueError(f"make_grid: ncols must be >= 1, got {ncols}")
    tiles = [np.asarray(im) for im in images]
    for i, t in enumerate(tiles):
        if t.ndim != 3 or t.shape[-1] != 3 or t.dtype != np.uint8:
            raise ValueError(f"make_grid: image {i} is not HxWx3 uint8 (shape {t.shape}, dtype {t.dtype})")
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    ncols = min(ncols, len(tiles))
    nrows = -(-len(tiles) // ncols)
    grid = np.full((nrows * th + (nrows + 1) * pad, ncols * tw + (ncols + 1) * pad, 3), pad_value, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y = pad + r * (th + pad)
        x = pad + c * (tw + pad)
        grid[y:y + t.shape[0], x:x + t.shape[1]] = t
    return grid

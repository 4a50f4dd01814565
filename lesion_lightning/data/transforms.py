"""Transform sets, one per paper: working size, normalisation and training augmentation, built with
albumentations 2.x. (A "preset" is something else: a paper's recipe YAML under experiments/, whose
`data.augment` names its transform set.)

Every transform set takes `image=` uint8 (H, W, 3) RGB and `mask=` uint8 (H, W) in {0, 1} and returns
`image` as a float32 torch tensor (3, h, w) and `mask` as a uint8 torch tensor (h, w) in {0, 1}.
Masks always use nearest-neighbour interpolation with a zero border, and are re-binarised at the
end, so they stay binary and aligned with the image. Evaluation (`train=False`) is resize +
normalise only. `image_size` overrides the set's default working size.

| transform set (`data.augment`) | default size | training augmentation | normalisation |
|---|---|---|---|
| none | 256x256 | none | x / 255 |
| lanet | 224x224 | none named in the paper | x / 255 (paper: resize to 224; no scaling stated) |
| medlitenet | 512x512 | random crop-resize, flips, rotation, elastic, scale/translate, | ImageNet mean/std |
|  |  | brightness/contrast, CLAHE, gamma, Gaussian noise/blur |  |
| slsnet | 128x128 | h/v flips, gamma in {0.5, 1.0, 1.5}, CLAHE clip limit 1-2 | [-1, 1] (*) |
| scsonet | 256x256 | h/v flips, random rotation | per-image min-max to [0, 1] (paper: "normalized") |
| unet_aksoy | 128x128 (their model input) | rotation, flips, zoom | x / 255 (paper: divided by 255) |

(*) our choice, the pix2pix convention of GAN generators such as SLSNet's; the paper does not say.
Parameter values the papers do not give (rotation ranges, probabilities, zoom range, noise levels)
are ours and marked as such below.

Seeding: albumentations keeps its own random state per `Compose`. `build_transforms` seeds it from
torch's initial seed (so `seed_everything` makes augmentation reproducible); DataLoader workers hold
copies of that state, so call `reseed(transform)` in the worker_init_fn: each worker (and each epoch,
for non-persistent workers) then draws a different, reproducible stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

__all__ = ["TRANSFORM_SET_NAMES", "TRANSFORM_SETS", "DEFAULT_SIZES", "Normalisation", "TransformSet", "build_transforms",
           "reseed", "BinarizeMask"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Geometry shared by all transform sets: masks nearest-neighbour (pixel-centre exact for resizes), zero borders.
_MASK_NN = cv2.INTER_NEAREST
_BORDER = dict(border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0)


class BinarizeMask(A.DualTransform):
    """Force the mask to uint8 {0, 1} (any non-zero value is lesion); the image is untouched."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return (mask > 0).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class MinMaxScale(A.ImageOnlyTransform):
    """Per-image min-max scaling of all channels together to float32 [0, 1] (a flat image gives 0)."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        img = img.astype(np.float32)
        lo, hi = float(img.min()), float(img.max())
        return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


def _resize(h: int, w: int) -> A.BasicTransform:
    # Same interpolation as the decode cache: area when shrinking, bilinear when enlarging.
    return A.Resize(h, w, interpolation=cv2.INTER_LINEAR, area_for_downscale="image",
                    mask_interpolation=cv2.INTER_NEAREST_EXACT)


@dataclass(frozen=True)
class Normalisation:
    """How a transform set maps uint8 pixels to the network's input: `mean_std` is (x / 255 - mean) / std per RGB
    channel, `min_max` per-image min-max scaling. Training transforms, inference and model cards read it."""

    kind: str
    formula: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def transform(self) -> A.BasicTransform:
        if self.kind == "min_max":
            # Per image, all channels together (albumentations' own "min_max" mode returns float64 and
            # stops short of 1 by an epsilon).
            return MinMaxScale()
        return A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0)

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "min_max":
            return {"kind": self.kind, "formula": self.formula}
        return {"kind": self.kind, "scale": 1 / 255, "mean": list(self.mean), "std": list(self.std),
                "formula": self.formula}


X_255 = Normalisation("mean_std", "x / 255")


def _flips() -> list[A.BasicTransform]:
    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]


def _medlitenet_augmentations(h: int, w: int) -> list[A.BasicTransform]:
    # The paper names the operations, not their ranges/probabilities: the values are ours.
    return [
        A.RandomResizedCrop(size=(h, w), scale=(0.5, 1.0), ratio=(0.75, 1.333),
                            interpolation=cv2.INTER_LINEAR, mask_interpolation=_MASK_NN),
        *_flips(),
        A.Rotate(limit=(-30, 30), interpolation=cv2.INTER_LINEAR, mask_interpolation=_MASK_NN, p=0.5, **_BORDER),
        A.ElasticTransform(alpha=30, sigma=6, interpolation=cv2.INTER_LINEAR, mask_interpolation=_MASK_NN,
                           p=0.2, **_BORDER),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625), interpolation=cv2.INTER_LINEAR,
                 mask_interpolation=_MASK_NN, p=0.5, **_BORDER),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.CLAHE(clip_limit=(1, 4), p=0.2),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.GaussianBlur(blur_limit=(3, 5), p=0.2),
    ]


def _slsnet_augmentations(h: int, w: int) -> list[A.BasicTransform]:
    # The paper's offline set: flips, gamma in {0.5, 1.0, 1.5}, CLAHE clip limit in [1, 2].
    # albumentations' gamma_limit is in percent (50 -> gamma 0.5).
    return [
        *_flips(),
        A.OneOf([A.RandomGamma(gamma_limit=(g, g), p=1.0) for g in (50, 100, 150)], p=1.0),
        A.CLAHE(clip_limit=(1, 2), p=0.5),
    ]


def _scsonet_augmentations(h: int, w: int) -> list[A.BasicTransform]:
    # "vertical flip, horizontal flip, and random rotation": full-circle rotation is our reading.
    return [*_flips(), A.Rotate(limit=(-180, 180), interpolation=cv2.INTER_LINEAR,
                                mask_interpolation=_MASK_NN, p=0.5, **_BORDER)]


def _unet_aksoy_augmentations(h: int, w: int) -> list[A.BasicTransform]:
    # "rotation, flipping, and zooms": Keras-style ranges (rotation 20 deg, zoom 0.8-1.2) are ours.
    return [*_flips(), A.Affine(scale=(0.8, 1.2), rotate=(-20, 20), interpolation=cv2.INTER_LINEAR,
                                mask_interpolation=_MASK_NN, p=0.8, **_BORDER)]


def _no_augmentations(h: int, w: int) -> list[A.BasicTransform]:
    return []


@dataclass(frozen=True)
class TransformSet:
    """One paper's transform set, read by training transforms and by inference alike: default working size (H, W),
    normalisation, training-only augmentations (applied to uint8 images before resize + normalisation)."""

    size: tuple[int, int]
    description: str
    normalisation: Normalisation
    augmentations: Callable[[int, int], list[A.BasicTransform]] = _no_augmentations


TRANSFORM_SETS: dict[str, TransformSet] = {
    "none": TransformSet((256, 256), "resize, scale to [0, 1]; no augmentation", X_255),
    "lanet": TransformSet((224, 224), "LANET: resize 224, scale to [0, 1]; no augmentation named in the paper", X_255),
    "medlitenet": TransformSet(
        (512, 512), "MedLiteNet: crop-resize, flips, rotation, elastic, affine, colour, CLAHE, gamma, noise/blur; "
                    "ImageNet normalisation",
        Normalisation("mean_std", "(x / 255 - mean) / std per RGB channel", IMAGENET_MEAN, IMAGENET_STD),
        _medlitenet_augmentations),
    "slsnet": TransformSet(
        (128, 128), "SLSNet: flips, gamma 0.5/1.0/1.5, CLAHE clip 1-2, 128x128; scale to [-1, 1]",
        Normalisation("mean_std", "(x / 255 - 0.5) / 0.5, i.e. [-1, 1]", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        _slsnet_augmentations),
    # Standardising before min-max (as some code in this family does) would not change the result:
    # min-max scaling is invariant to affine maps.
    "scsonet": TransformSet((256, 256), "SCSONet: flips + random rotation, 256x256; per-image min-max to [0, 1]",
                          Normalisation("min_max", "(x - min) / (max - min) over the whole image"),
                          _scsonet_augmentations),
    "unet_aksoy": TransformSet((128, 128), "U-Net (Aksoy): rotation, flips, zoom; x / 255", X_255,
                             _unet_aksoy_augmentations),
}
TRANSFORM_SET_NAMES: tuple[str, ...] = tuple(TRANSFORM_SETS)
DEFAULT_SIZES: dict[str, tuple[int, int]] = {k: v.size for k, v in TRANSFORM_SETS.items()}


def build_transforms(
    transform_set: str, image_size: tuple[int, int] | None = None, train: bool = True, *, seed: int | None = None
) -> A.Compose:
    """The albumentations pipeline of `transform_set` at `image_size` (H, W) (None: the set's default).

    `seed` seeds albumentations' own random state (default: derived from torch's initial seed).
    """
    if transform_set not in TRANSFORM_SETS:
        raise ValueError(f"augment: unknown transform set {transform_set!r}; choose one of: "
                         f"{', '.join(TRANSFORM_SET_NAMES)}")
    h, w = (int(v) for v in (image_size if image_size is not None else DEFAULT_SIZES[transform_set]))
    if h < 1 or w < 1:
        raise ValueError(f"image_size: height and width must be positive, got {image_size}")
    spec = TRANSFORM_SETS[transform_set]
    ops: list[A.BasicTransform] = spec.augmentations(h, w) if train else []
    # The final resize is a no-op after RandomResizedCrop, and the only geometry in evaluation.
    ops += [_resize(h, w), spec.normalisation.transform(), BinarizeMask(), ToTensorV2()]
    if seed is None:
        seed = torch.initial_seed() % 2**32
    return A.Compose(ops, seed=seed)


def reseed(transform: A.Compose, seed: int | None = None) -> None:
    """Reseed a pipeline's random state; default torch.initial_seed(), different in each DataLoader worker.

    Call from a DataLoader worker_init_fn so workers do not replay one augmentation stream.
    """
    transform.set_random_seed(int(seed if seed is not None else torch.initial_seed() % 2**32))

"""Transform sets: output types/sizes, binary aligned masks, paper normalisations, seeding."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from lesion_lightning.data.transforms import (
    DEFAULT_SIZES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRANSFORM_SET_NAMES,
    build_transforms,
    reseed,
)


def _square_pair(h: int = 90, w: int = 130) -> tuple[np.ndarray, np.ndarray]:
    """A bright rectangle on a dark textured background; the mask is exactly the rectangle."""
    rng = np.random.default_rng(0)
    image = rng.integers(10, 40, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[15:55, 20:90] = 1  # off-centre: a flip of the image alone would not line up
    image[mask == 1] = rng.integers(215, 250, (int(mask.sum()), 3), dtype=np.uint8)
    return image, mask


def test_transform_sets_listed():
    assert set(TRANSFORM_SET_NAMES) == {"none", "lanet", "medlitenet", "slsnet", "scsonet", "unet_aksoy"}
    assert DEFAULT_SIZES["lanet"] == (224, 224) and DEFAULT_SIZES["slsnet"] == (128, 128)
    assert DEFAULT_SIZES["scsonet"] == (256, 256)


@pytest.mark.parametrize("transform_set", TRANSFORM_SET_NAMES)
@pytest.mark.parametrize("train", [True, False])
def test_output_types_and_requested_size(transform_set, train):
    image, mask = _square_pair()
    transform = build_transforms(transform_set, (48, 64), train, seed=1)
    for _ in range(3):
        out = transform(image=image, mask=mask)
        assert isinstance(out["image"], torch.Tensor) and out["image"].dtype == torch.float32
        assert tuple(out["image"].shape) == (3, 48, 64)
        assert isinstance(out["mask"], torch.Tensor) and tuple(out["mask"].shape) == (48, 64)
        assert set(torch.unique(out["mask"]).tolist()) <= {0, 1}
        assert torch.isfinite(out["image"]).all()
    image_only = transform(image=image)  # predict: no mask
    assert tuple(image_only["image"].shape) == (3, 48, 64) and image_only.get("mask") is None


@pytest.mark.parametrize("transform_set", TRANSFORM_SET_NAMES)
def test_default_size_when_none(transform_set):
    image, mask = _square_pair(40, 50)
    out = build_transforms(transform_set, None, train=False)(image=image, mask=mask)
    assert tuple(out["image"].shape[1:]) == DEFAULT_SIZES[transform_set] == tuple(out["mask"].shape)


@pytest.mark.parametrize("transform_set", TRANSFORM_SET_NAMES)
def test_mask_stays_aligned_with_image(transform_set):
    image, mask = _square_pair()
    transform = build_transforms(transform_set, (72, 104), train=True, seed=3)
    checked = 0
    for _ in range(12):
        out = transform(image=image, mask=mask)
        m = out["mask"].numpy().astype(bool)
        if m.sum() < 50:  # rectangle cropped/rotated mostly out of view
            continue
        gray = out["image"].numpy().mean(axis=0)
        bright = gray > (gray.max() + gray.min()) / 2
        iou = (bright & m).sum() / (bright | m).sum()
        assert iou > 0.85, f"{transform_set}: image/mask IoU {iou:.2f} after augmentation"
        checked += 1
    assert checked >= 6


def test_training_augmentation_actually_varies():
    image, mask = _square_pair()
    for transform_set in ("medlitenet", "slsnet", "scsonet", "unet_aksoy"):
        transform = build_transforms(transform_set, (48, 64), train=True, seed=0)
        outs = [transform(image=image, mask=mask)["image"] for _ in range(6)]
        assert any(not torch.equal(outs[0], o) for o in outs[1:]), transform_set
    for transform_set in TRANSFORM_SET_NAMES:  # evaluation is deterministic
        transform = build_transforms(transform_set, (48, 64), train=False)
        assert torch.equal(transform(image=image, mask=mask)["image"], transform(image=image, mask=mask)["image"])


def test_paper_normalisations_at_working_size():
    image, mask = _square_pair(32, 48)
    ref = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)
    for transform_set in ("none", "lanet", "unet_aksoy"):
        out = build_transforms(transform_set, (32, 48), train=False)(image=image, mask=mask)
        torch.testing.assert_close(out["image"], ref)
        assert torch.equal(out["mask"], torch.from_numpy(mask))
    out = build_transforms("medlitenet", (32, 48), train=False)(image=image, mask=mask)
    expected = (ref - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out["image"], expected)
    out = build_transforms("slsnet", (32, 48), train=False)(image=image, mask=mask)
    torch.testing.assert_close(out["image"], ref * 2 - 1)
    out = build_transforms("scsonet", (32, 48), train=False)(image=image, mask=mask)
    lo, hi = image.min() / 255, image.max() / 255
    torch.testing.assert_close(out["image"], (ref - lo) / (hi - lo))
    assert out["image"].min() == 0 and out["image"].max() == 1


def test_slsnet_gamma_set_and_clahe_range():
    transform = build_transforms("slsnet", None, train=True)
    found = {"gamma": set(), "clahe": None}

    def walk(ts):
        for t in ts:
            if isinstance(t, A.RandomGamma):
                found["gamma"].add(tuple(t.gamma_limit))
            elif isinstance(t, A.CLAHE):
                found["clahe"] = tuple(t.clip_limit)
            if hasattr(t, "transforms"):
                walk(t.transforms)

    walk(transform.transforms)
    assert {g[0] / 100 for g in found["gamma"]} == {0.5, 1.0, 1.5}
    assert all(lo == hi for lo, hi in found["gamma"])
    assert found["clahe"] == (1, 2)


def test_seeding_and_reseed():
    image, mask = _square_pair()
    a = build_transforms("medlitenet", (48, 64), True, seed=11)
    b = build_transforms("medlitenet", (48, 64), True, seed=11)
    first = [a(image=image, mask=mask)["image"] for _ in range(3)]
    assert all(torch.equal(x, b(image=image, mask=mask)["image"]) for x in first)
    reseed(a, 11)
    assert torch.equal(a(image=image, mask=mask)["image"], first[0])
    reseed(a, 12)
    assert not torch.equal(a(image=image, mask=mask)["image"], first[0])


def test_unknown_transform_set_lists_choices():
    with pytest.raises(ValueError, match="augment: unknown transform set 'unet'.*slsnet"):
        build_transforms("unet", (64, 64), True)

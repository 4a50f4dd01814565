"""Drawing of the synthetic dermoscopy-like images and their file writers (JPEG, mask PNG, PH2's
superpixels, noise files). No dataset knowledge here: the dataset modules lay the files out
(lesion_lightning/data/datasets/), and `synthetic.write_dataset` dispatches to them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = ["image_rng", "make_sample", "random_lesion", "render", "write_jpeg", "write_mask_png",
           "write_noise_files", "write_superpixels"]


_SKIN_TONES = np.array(  # RGB, light to medium skin under dermoscope light
    [[236, 196, 180], [226, 178, 160], [214, 164, 140], [200, 150, 126], [232, 190, 168], [188, 134, 110]],
    dtype=np.float32,
)
_LESION_TONES = np.array(  # RGB of pigment: light brown, brown, dark brown, blue-grey
    [[170, 110, 80], [140, 85, 60], [105, 60, 45], [80, 50, 45], [110, 95, 110]], dtype=np.float32
)
_LESION_TONE_P = (0.25, 0.3, 0.25, 0.12, 0.08)  # blue-grey lesions are the rare ones


@dataclass(frozen=True)
class _Lesion:
    """Shape and colour of one lesion; HAM10000 layouts render several images of the same lesion."""

    centre: tuple[float, float]  # fraction of (H, W)
    radius: float  # fraction of min(H, W)
    aspect: float
    angle: float
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) for k = 2, 3, ...
    tone: tuple[float, float, float]
    core_darkening: float
    blotches: tuple[tuple[float, float, float, float], ...]  # (dy, dx, size, strength) in lesion units
    border_softness: float


def random_lesion(rng: np.random.Generator) -> _Lesion:
    k = int(rng.integers(3, 7))
    harmonics = tuple(
        (float(rng.uniform(0.0, 0.22) / (i + 1) ** 0.8), float(rng.uniform(0, 2 * math.pi))) for i in range(k)
    )
    tone = _LESION_TONES[rng.choice(len(_LESION_TONES), p=_LESION_TONE_P)] * rng.uniform(0.9, 1.1, 3)
    blotches = tuple(
        (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.08, 0.25)),
         float(rng.uniform(0.2, 0.5)))
        for _ in range(int(rng.integers(0, 5)))
    )
    return _Lesion(
        centre=(float(rng.uniform(0.38, 0.62)), float(rng.uniform(0.38, 0.62))),
        radius=float(rng.uniform(0.14, 0.32)),
        aspect=float(rng.uniform(0.7, 1.0)),
        angle=float(rng.uniform(0, math.pi)),
        harmonics=harmonics,
        tone=tuple(float(t) for t in np.clip(tone, 30, 220)),
        core_darkening=float(rng.uniform(0.15, 0.45)),
        blotches=blotches,
        border_softness=float(rng.uniform(0.006, 0.025)),
    )


def _smooth_noise(rng: np.random.Generator, hw: tuple[int, int], cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], channel-first (channels, H, W) or (H, W) for one channel.

    A coarse random grid is upsampled bicubically to at most 64 px, then bilinearly to full size
    (bicubic straight to full size is 10x slower and looks the same at this frequency).
    """
    h, w = hw
    ch = max(2, round(cells * h / max(h, w)))
    cw = max(2, round(cells * w / max(h, w)))
    mid = (min(w, max(cw, 64)), min(h, max(ch, 64)))
    planes = []
    for _ in range(channels):
        coarse = rng.uniform(-1, 1, (ch, cw)).astype(np.float32)
        planes.append(cv2.resize(cv2.resize(coarse, mid, interpolation=cv2.INTER_CUBIC), (w, h)))
    return planes[0] if channels == 1 else np.stack(planes)


def _lesion_polygon(lesion: _Lesion, hw: tuple[int, int], n: int = 256) -> np.ndarray:
    h, w = hw
    theta = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.ones_like(theta)
    for i, (amp, phase) in enumerate(lesion.harmonics):
        r += amp * np.cos((i + 2) * theta + phase)
    r *= lesion.radius * min(h, w)
    x, y = r * np.cos(theta), r * np.sin(theta) * lesion.aspect
    ca, sa = math.cos(lesion.angle), math.sin(lesion.angle)
    xs = lesion.centre[1] * w + ca * x - sa * y
    ys = lesion.centre[0] * h + sa * x + ca * y
    # cv2 polygon coordinates in 1/16 pixel (shift=4) for a smooth, exact rasterisation
    return np.round(np.stack([xs, ys], axis=1) * 16).astype(np.int32)


def _soft(layer: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide blurs run on a downscaled copy (same look, a fraction of the time)."""
    factor = int(sigma // 2)
    if factor < 2:
        return cv2.GaussianBlur(layer, (0, 0), max(sigma, 0.5))
    h, w = layer.shape[:2]
    small = cv2.resize(layer, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _colour(rgb) -> np.ndarray:
    return np.asarray(rgb, np.float32).reshape(3, 1, 1)


def _draw_skin(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, scratch buffer, grain): base tone, low-frequency blotchiness, fine grain at ~2-pixel scale."""
    skin = _colour(_SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.94, 1.06, 3))
    grain = cv2.resize(rng.standard_normal((max(2, h // 2), max(2, w // 2)), dtype=np.float32), (w, h))
    shade = 1 + 0.06 * _smooth_noise(rng, (h, w), 5) + 0.015 * grain
    img = skin * shade
    tint = _smooth_noise(rng, (h, w), 16, 3)  # reused afterwards as the scratch buffer
    tint *= 4
    img += tint
    return img, tint, grain


def _draw_lesion(lesion: _Lesion, rng: np.random.Generator, img: np.ndarray, scratch: np.ndarray,
                 grain: np.ndarray) -> np.ndarray:
    """Blend the lesion into `img` in place; returns its exact polygon mask (fuzzy border only in the image)."""
    f32 = np.float32
    h, w = img.shape[1:]
    short = min(h, w)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [_lesion_polygon(lesion, (h, w))], 1, lineType=cv2.LINE_8, shift=4)
    if not mask.any():  # degenerate tiny sizes: keep at least the centre pixel
        mask[int(lesion.centre[0] * h), int(lesion.centre[1] * w)] = 1
    alpha = _soft(mask.astype(f32), max(0.8, lesion.border_softness * short))
    # Depth inside the lesion (0 at the border, 1 at the deepest point): darker centre.
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    depth = np.sqrt(dist / max(float(dist.max()), 1.0))
    texture = 1 + 0.12 * _smooth_noise(rng, (h, w), 12) + 0.04 * grain
    shading = (1 - f32(lesion.core_darkening) * depth) * texture
    blot_layer = np.zeros((h, w), f32)
    cy, cx, rad = lesion.centre[0] * h, lesion.centre[1] * w, lesion.radius * short
    for dy, dx, bsize, strength in lesion.blotches:
        centre = (round(cx + dx * rad), round(cy + dy * rad))
        axes = (max(1, round(bsize * rad)), max(1, round(bsize * rad * rng.uniform(0.5, 1.0))))
        cv2.ellipse(blot_layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(strength), -1)
    if lesion.blotches:
        shading *= 1 - _soft(blot_layer, max(0.8, 0.02 * short)) * mask
    np.multiply(_colour(lesion.tone), shading, out=scratch)  # pigment colour
    scratch -= img
    scratch *= alpha
    img += scratch
    return mask


def _draw_hairs(rng: np.random.Generator, img: np.ndarray, scratch: np.ndarray) -> None:
    """Thin dark quadratic curves across the field, some over the lesion (in place)."""
    h, w = img.shape[1:]
    short = min(h, w)
    n_hairs = int(rng.choice([0, 0, 1, 2, 3, 5, 8]))
    if not n_hairs:
        return
    hair = np.zeros((h, w), np.float32)
    t = np.linspace(0, 1, 48)[:, None]
    for _ in range(n_hairs):
        p0 = rng.uniform([0, 0], [w, h])
        p2 = rng.uniform([0, 0], [w, h])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.2 * short, 2)
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        thickness = max(1, round(short / 256 * rng.uniform(0.8, 2.2)))
        cv2.polylines(hair, [np.round(pts * 16).astype(np.int32)], False, float(rng.uniform(0.6, 0.95)),
                      thickness, cv2.LINE_AA, shift=4)
    np.subtract(_colour([40, 28, 22]) * np.float32(rng.uniform(0.6, 1.3)), img, out=scratch)
    scratch *= hair
    img += scratch


def _draw_ruler(rng: np.random.Generator, img: np.ndarray, scratch: np.ndarray) -> None:
    """Ruler marks along one edge, in about one image in four (in place)."""
    if rng.random() >= 0.25:
        return
    h, w = img.shape[1:]
    short = min(h, w)
    ruler = np.zeros((h, w), np.float32)
    step = max(3, round(short * rng.uniform(0.03, 0.05)))
    edge = int(rng.integers(4))  # 0 top, 1 bottom, 2 left, 3 right
    offset = round(short * rng.uniform(0.12, 0.2))
    length = w if edge < 2 else h
    for i, pos in enumerate(range(round(0.25 * length), round(0.75 * length), step)):
        tick = round(short * (0.05 if i % 5 == 0 else 0.025))
        a, b = [(pos, offset), (pos, offset + tick)] if edge < 2 else [(offset, pos), (offset + tick, pos)]
        if edge == 1:
            a, b = (pos, h - 1 - offset), (pos, h - 1 - offset - tick)
        elif edge == 3:
            a, b = (w - 1 - offset, pos), (w - 1 - offset - tick, pos)
        cv2.line(ruler, a, b, 0.85, max(1, round(short / 300)), cv2.LINE_AA)
    np.subtract(np.float32(20.0), img, out=scratch)
    scratch *= ruler
    img += scratch


def _vignette(rng: np.random.Generator, img: np.ndarray) -> None:
    """Dermoscope vignetting: circular field of view fading to near-black corners (in place)."""
    f32 = np.float32
    h, w = img.shape[1:]
    yy = (np.arange(h, dtype=f32) - (h - 1) / 2)[:, None]
    xx = (np.arange(w, dtype=f32) - (w - 1) / 2)[None, :]
    rr = np.sqrt(yy * yy + xx * xx) / f32(0.5 * math.hypot(h, w))  # 1.0 at the corners
    r0 = f32(rng.uniform(0.7, 1.0))  # where the dark rim starts
    fade = np.clip((rr - r0) / f32(0.18), 0, 1)
    img *= 1 - 0.93 * fade * fade * (3 - 2 * fade) - 0.1 * rr * rr


def render(lesion: _Lesion, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) 0/1 mask of `lesion`: skin, lesion, hairs, ruler, vignetting."""
    # Works channel-first (3, H, W) in float32: broadcasting (H, W) planes over a leading colour
    # axis is ~10x faster in numpy than over a trailing one. Full-size temporaries are kept few
    # (in-place ops on one scratch buffer): fresh large allocations page-fault and dominated the time.
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise ValueError(f"synthetic image size must be at least 16x16, got {h}x{w}")
    img, scratch, grain = _draw_skin(rng, h, w)
    mask = _draw_lesion(lesion, rng, img, scratch, grain)
    _draw_hairs(rng, img, scratch)
    _draw_ruler(rng, img, scratch)
    _vignette(rng, img)
    np.clip(img, 0, 255, out=img)
    np.rint(img, out=img)
    return cv2.merge([plane.astype(np.uint8) for plane in img]), mask


def make_sample(rng: np.random.Generator, size: tuple[int, int] = (192, 256)) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic dermoscopy image (H, W, 3) uint8 RGB and its exact lesion mask (H, W) uint8 {0, 1}."""
    return render(random_lesion(rng), rng, size)


# ----------------------------------------------------------------------------------------------
# Writing files (the dataset modules of lesion_lightning.data.datasets lay them out)


def image_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent random streams: image i is the same whatever the number of images. Stream 0 draws
    the images; dataset writers draw their metadata from streams of their own."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


def write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write {path}")


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)


def write_noise_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "LICENSE.txt").write_text("Synthetic data generated by lesion-lightning; no licence restrictions.\n")
    (folder / "ATTRIBUTION.txt").write_text("Synthetic images: lesion_lightning.data.synthetic (not real patients).\n")


def write_superpixels(path: Path, hw: tuple[int, int]) -> None:
    """ISIC 2017 ships `_superpixels.png`: superpixel indices encoded in RGB; a grid stands in for SLIC."""
    h, w = hw
    cell = max(8, min(h, w) // 16)
    idx = (np.arange(h)[:, None] // cell) * ((w + cell - 1) // cell) + np.arange(w)[None, :] // cell
    rgb = np.stack([idx & 255, (idx >> 8) & 255, (idx >> 16) & 255], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)

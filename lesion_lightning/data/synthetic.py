"""Deterministic synthetic dermoscopy-like images with exact lesion masks, in official dataset layouts.

The images are not meant to fool a dermatologist; they carry the nuisances a segmentation model meets
in real dermoscopy (skin texture, dark circular vignetting of the dermoscope, hairs crossing the
lesion, ruler marks, a fuzzy lesion border with darker blotches) so every reader, cache and training
path can be exercised anywhere, at any size, without downloading a dataset. The mask is the lesion
polygon only: hairs and rulers drawn over it do not change it.
"""

from __future__ import annotations

from pathlib import Path

from lesion_lightning.data.datasets import get_dataset_spec, list_datasets
from lesion_lightning.data.datasets.isic2017 import FOLDERS as ISIC2017_FOLDERS
from lesion_lightning.data.datasets.isic2018 import FOLDERS as ISIC2018_FOLDERS
from lesion_lightning.data.synthetic_draw import (  # noqa: F401  (the drawing API, re-exported)
    image_rng,
    make_sample,
    random_lesion,
    render,
    write_jpeg,
    write_mask_png,
    write_noise_files,
    write_superpixels,
)

__all__ = ["LAYOUTS", "make_sample", "render", "random_lesion", "write_dataset", "ISIC2018_FOLDERS",
           "ISIC2017_FOLDERS"]

LAYOUTS = list_datasets()  # every registered dataset has a synthetic writer


def write_dataset(
    root: str | Path,
    layout: str = "isic2018",
    num_images: int = 20,
    *,
    seed: int = 0,
    image_size: tuple[int, int] = (192, 256),
    subsets: dict[str, int] | None = None,
) -> Path:
    """Write a synthetic dataset in the folder layout of the registered dataset `layout` under `root`.

    `subsets` = {"train": n, "val": n, "test": n} for datasets with official subsets (default: all
    `num_images` in train). Each dataset module's writer lays the files out as the real dataset does
    (see lesion_lightning/data/datasets/). Deterministic: the same arguments write byte-identical
    files. Returns `root`.
    """
    spec = get_dataset_spec(layout, option="layout")
    if int(seed) < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed}")
    if subsets is None:
        counts = {"train": int(num_images)}
    else:
        spec.check_subsets(subsets)
        if not spec.has_official_subsets:
            raise ValueError(f"subsets: layout {layout!r} has no official subsets; give num_images instead")
        counts = {k: int(v) for k, v in subsets.items() if int(v) > 0}
    if sum(counts.values()) < 1:
        raise ValueError("num_images: at least one image is needed")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    spec.write_synthetic(root, counts, int(seed), (int(image_size[0]), int(image_size[1])))
    return root

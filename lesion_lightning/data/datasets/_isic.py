"""What the ISIC challenge datasets (2017, 2018) share: folder-per-subset layout, reader, synthetic writer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from lesion_lightning.data.datasets.registry import SUBSETS, Archive
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.layout import ScanBuilder, find_dir, image_files, mask_index, pattern_regex
from lesion_lightning.data.records import SampleRecord

ISIC_S3 = "https://isic-challenge-data.s3.amazonaws.com"
MASK_PATTERN = "{id}_segmentation.png"
SYNTHETIC_IMAGES = {"train": 40, "val": 5, "test": 11}


def isic_archive(year: str, name: str, subset: str) -> Archive:
    return Archive(f"{name}.zip", f"{ISIC_S3}/{year}/{name}.zip", into=name, subset=subset)


def archives(year: str, folders: Mapping[str, tuple[str, str]]) -> tuple[Archive, ...]:
    return tuple(isic_archive(year, name, subset) for subset in SUBSETS if subset in folders
                 for name in folders[subset])


def detector(folders: Mapping[str, tuple[str, str]]) -> Callable[[Path], bool]:
    wanted = {n.lower() for pair in folders.values() for n in pair}
    return lambda root: any(p.is_dir() and p.name.lower() in wanted for p in root.iterdir())


def scan_isic(builder: ScanBuilder, folders: Mapping[str, tuple[str, str]], subsets: list[str] | None,
              skip: Callable[[Path], bool] = lambda p: False) -> None:
    """One image folder + one ground-truth folder per official subset. A subset whose ground-truth
    folder is absent gives unlabelled records (prediction only) and a warning."""
    regex = pattern_regex(MASK_PATTERN)
    for subset in [s for s in SUBSETS if s in folders and (subsets is None or s in subsets)]:
        image_name, gt_name = folders[subset]
        image_dir, gt_dir = find_dir(builder.root, image_name), find_dir(builder.root, gt_name)
        if image_dir is None:
            if subsets is not None:
                raise DataError(builder.root / image_name,
                                f"subset {subset!r} requested but its image folder is missing")
            if gt_dir is not None:
                builder.orphan_masks(mask_index(builder, gt_dir, regex))
            continue
        masks = mask_index(builder, gt_dir, regex) if gt_dir is not None else {}
        images = [p for p in image_files(image_dir) if not skip(p)]
        if gt_dir is None and images:
            builder.unlabelled.append(subset)
            builder.warn(builder.root / gt_name,
                         f"ground-truth folder not found: the {len(images)} {subset} images are usable "
                         "for prediction only")
        for path in images:
            image_id = path.stem
            mask = masks.pop(image_id, None)
            builder.add(SampleRecord(image_id, path, mask, subset, image_id, {}),
                        mask_expected=gt_dir is not None,
                        expected_mask=None if gt_dir is None else gt_dir / MASK_PATTERN.format(id=image_id))
        builder.orphan_masks(masks)


def write_isic(root: Path, folders: Mapping[str, tuple[str, str]], counts: dict[str, int], seed: int,
               hw: tuple[int, int], superpixels: bool = False) -> None:
    """Synthetic pairs in the official folders, with LICENSE/ATTRIBUTION noise files (and, for 2017,
    `ISIC_xxxxxxx_superpixels.png` beside the images)."""
    from lesion_lightning.data import synthetic_draw as syn

    index = 0
    for subset in [s for s in SUBSETS if s in folders]:
        n = counts.get(subset, 0)
        if not n:
            continue
        img_dir, gt_dir = (root / f for f in folders[subset])
        syn.write_noise_files(img_dir)
        syn.write_noise_files(gt_dir)
        for _ in range(n):
            image_id = f"ISIC_{index:07d}"
            image, mask = syn.make_sample(syn.image_rng(seed, index), hw)
            syn.write_jpeg(img_dir / f"{image_id}.jpg", image)
            syn.write_mask_png(gt_dir / MASK_PATTERN.format(id=image_id), mask)
            if superpixels:
                syn.write_superpixels(img_dir / f"{image_id}_superpixels.png", hw)
            index += 1

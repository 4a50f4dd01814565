"""`folder`: any folder of image/mask pairs, for data not in an official layout (redistributions).

Flat: ``<image_dir>/<id>.<ext>`` + ``<mask_dir>/<mask_pattern>`` (defaults ``images``, ``masks``,
``{id}_segmentation.png``). With subsets: ``train/``, ``val/``, ``test/`` folders under the root, each
holding ``<image_dir>`` + ``<mask_dir>`` (found automatically), or `subset_dirs` mapping a subset to
one folder (holding image_dir + mask_dir) or to an [image folder, mask folder] pair, e.g.
``{train: [trainx, trainy], val: [validationx, validationy]}``.

`image_pattern` (default: any image file, its id is the name without suffix) pairs images whose names
differ from their masks' by more than a suffix, e.g. ``imgx{id}.jpg`` with ``mask_pattern: imgy{id}.jpg``.
`ids_per_subset`: the same id names different images in different subsets (``train/imgx1.jpg``,
``test/imgx1.jpg``): record ids become ``<subset>-<id>``.

`metadata`: a CSV file (path under the root, or absolute) whose `id_column` names the image id; each
record carries its row, and `group_column` (e.g. lesion_id) groups images of one lesion in splits.
`mask_encoding`: auto (any two-valued encoding), 0/1, 0/255, or threshold (lossy masks: > 127 is
lesion); masks stored as JPEG are read with threshold unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets.registry import SUBSETS, DatasetSpec, register_dataset
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.io import MASK_ENCODINGS
from lesion_lightning.data.layout import ScanBuilder, image_files, mask_index, pattern_regex, read_metadata_csv
from lesion_lightning.data.records import Problem, SampleRecord

OPTIONS = {"image_dir": "images", "mask_dir": "masks", "mask_pattern": "{id}_segmentation.png",
           "image_pattern": None, "ids_per_subset": False, "subset_dirs": None, "metadata": None, "id_column": "image_id", "group_column": None,
           "mask_encoding": "auto"}
LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg")


def _subset_folders(root: Path, options: dict[str, Any]) -> dict[str | None, tuple[Path, Path]]:
    """subset (None: no subsets) -> (image folder, mask folder)."""
    image_dir, mask_dir, given = options["image_dir"], options["mask_dir"], options["subset_dirs"]
    if given is None:
        if (root / image_dir).is_dir():
            return {None: (root / image_dir, root / mask_dir)}
        found = {s: (root / s / image_dir, root / s / mask_dir) for s in SUBSETS if (root / s / image_dir).is_dir()}
        return found or {None: (root / image_dir, root / mask_dir)}
    if not isinstance(given, Mapping) or not set(given) <= set(SUBSETS):
        raise ValueError(f"subset_dirs: expected a mapping of {'/'.join(SUBSETS)} to folders, got {given!r}")
    out: dict[str | None, tuple[Path, Path]] = {}
    for subset in (s for s in SUBSETS if s in given):
        value = given[subset]
        if isinstance(value, str):
            out[subset] = (root / value / image_dir, root / value / mask_dir)
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            out[subset] = (root / str(value[0]), root / str(value[1]))
        else:
            raise ValueError(f"subset_dirs.{subset}: expected a folder or [image folder, mask folder], got {value!r}")
    return out


def _mask_encoding(options: dict[str, Any]) -> str:
    encoding = options["mask_encoding"]
    if encoding not in MASK_ENCODINGS:
        raise ValueError(f"mask_encoding: {encoding!r}; choose one of {', '.join(MASK_ENCODINGS)}")
    if encoding == "auto" and options["mask_pattern"].lower().endswith(LOSSY_MASK_SUFFIXES):
        return "threshold"  # JPEG masks carry compression noise around the two levels
    return encoding


def _metadata(root: Path, options: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    if options["metadata"] is None:
        if options["group_column"] is not None:
            raise ValueError("group_column: needs the metadata option (a CSV file with that column)")
        return None
    path = root / str(options["metadata"])
    if not path.is_file():
        raise DataError(path, "metadata file not found (folder dataset option metadata)")
    required = (options["group_column"],) if options["group_column"] else ()
    return read_metadata_csv(path, options["id_column"], required=required)


def _image_ids(builder: ScanBuilder, folder: Path, options: dict[str, Any]) -> list[tuple[str, Path]]:
    """(id, path) of each image of `folder`: its name without suffix, or what `{id}` matches in image_pattern."""
    if options["image_pattern"] is None:
        return [(path.stem, path) for path in image_files(folder)]
    regex, out = pattern_regex(str(options["image_pattern"]), "image_pattern"), []
    for path in image_files(folder):
        m = regex.match(path.name)
        if m is None:
            builder.warn(path, f"ignored: file name does not match the image pattern {options['image_pattern']!r}")
        else:
            out.append((m["id"], path))
    return out


def scan_folder(builder: ScanBuilder, subsets: list[str] | None, options: dict[str, Any]) -> None:
    regex = pattern_regex(options["mask_pattern"])
    encoding = _mask_encoding(options)
    metadata = _metadata(builder.root, options)
    folders = _subset_folders(builder.root, options)
    if subsets is not None:
        if None in folders:
            raise ValueError("subsets: dataset 'folder' has no official subsets here (no train/val/test folders "
                             "and no subset_dirs)")
        folders = {s: f for s, f in folders.items() if s in subsets}
    for subset, (images_path, masks_path) in folders.items():
        if not images_path.is_dir():
            raise DataError(images_path, "image folder not found (folder dataset option image_dir or subset_dirs)")
        masks = mask_index(builder, masks_path, regex) if masks_path.is_dir() else {}
        images = _image_ids(builder, images_path, options)
        if not masks_path.is_dir() and images:
            builder.problems.append(Problem(str(masks_path), f"mask folder not found: {len(images)} images have no mask"))
        same_folder = images_path.resolve() == masks_path.resolve()
        prefix = f"{subset}-" if options["ids_per_subset"] and subset is not None else ""
        for image_id, path in images:
            if same_folder and regex.match(path.name):  # images and masks share one folder
                continue
            row = dict(metadata.get(image_id, {})) if metadata is not None else {}
            if metadata is not None and not row:
                builder.warn(path, f"no row in {options['metadata']}: grouped by its image id")
            group = (row.get(options["group_column"]) if options["group_column"] else None) or prefix + image_id
            builder.add(SampleRecord(prefix + image_id, path, masks.pop(image_id, None), subset, group, row, encoding),
                        mask_expected=masks_path.is_dir(),
                        expected_mask=masks_path / options["mask_pattern"].format(id=image_id),
                        across_subsets_hint=None if prefix else "set reader option ids_per_subset: true")
        builder.orphan_masks(masks)


def _write(root: Path, counts: dict[str, int], seed: int, hw: tuple[int, int]) -> None:
    """`images/img_NNNN.jpg` + `masks/img_NNNN_segmentation.png`."""
    from lesion_lightning.data import synthetic_draw as syn

    for i in range(counts["train"]):
        image, mask = syn.make_sample(syn.image_rng(seed, i), hw)
        syn.write_jpeg(root / "images" / f"img_{i:04d}.jpg", image)
        syn.write_mask_png(root / "masks" / f"img_{i:04d}_segmentation.png", mask)


def _detect(root: Path) -> bool:
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    return {"images", "masks"} <= names or any((root / s / "images").is_dir() for s in SUBSETS)


SPEC = register_dataset(DatasetSpec(
    name="folder",
    label="folder",
    layout="images/ + masks/, or train/val/test folders each holding them "
           "(see --image-dir, --mask-dir, --mask-pattern)",
    scan=scan_folder,
    write_synthetic=_write,
    detect=_detect,
    reader_options=OPTIONS,
    fixed_layout=False,
))

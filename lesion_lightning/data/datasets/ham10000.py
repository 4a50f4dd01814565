"""HAM10000 with Tschandl's lesion masks: ``HAM10000_images_part_1/`` + ``HAM10000_images_part_2/``
(or one ``HAM10000_images/``), masks in ``HAM10000_segmentations_lesion_tschandl/ISIC_xxxxxxx_segmentation.png``
and ``HAM10000_metadata.csv``: each record carries its row (lesion_id, dx, ...) and groups by lesion_id,
so splits never put two images of one lesion in different subsets. From Harvard Dataverse
(doi:10.7910/DVN/DBW86T)."""

from __future__ import annotations

import csv
from pathlib import Path

from lesion_lightning.data.datasets.registry import Archive, DatasetSpec, register_dataset
from lesion_lightning.data.layout import ScanBuilder, find_dir, image_files, mask_index, pattern_regex, \
    read_metadata_csv
from lesion_lightning.data.records import Problem, SampleRecord

DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile"
IMAGE_FOLDERS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
MASK_FOLDER = "HAM10000_segmentations_lesion_tschandl"
MASK_PATTERN = "{id}_segmentation.png"
METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata", "HAM10000_metadata.tab")
GROUP_COLUMN = "lesion_id"


def _detect(root: Path) -> bool:
    # by its folders: the metadata table alone also sits beside redistributions' other layouts (ham10000_200)
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    return any(n.lower() in names for n in (*IMAGE_FOLDERS, MASK_FOLDER))


def _metadata(builder: ScanBuilder) -> dict[str, dict[str, str]] | None:
    path = next((p for n in METADATA_NAMES if (p := builder.root / n).is_file()), None)
    if path is None:
        builder.warn(builder.root / METADATA_NAMES[0],
                     "metadata file not found: no lesion_id/dx; splits group by image id, so images of one lesion "
                     "may land in different subsets")
        return None
    return read_metadata_csv(path, "image_id", required=(GROUP_COLUMN,))


def _scan(builder: ScanBuilder, subsets: list[str] | None, options: dict) -> None:
    regex = pattern_regex(MASK_PATTERN)
    mask_dir = find_dir(builder.root, MASK_FOLDER)
    masks = mask_index(builder, mask_dir, regex) if mask_dir is not None else {}
    metadata = _metadata(builder)
    images = [p for name in IMAGE_FOLDERS if (d := find_dir(builder.root, name)) is not None for p in image_files(d)]
    if mask_dir is None and images:
        builder.problems.append(Problem(str(builder.root / MASK_FOLDER),
                                        f"mask folder not found: {len(images)} images have no mask"))
    for path in images:
        image_id = path.stem
        row = dict(metadata.get(image_id, {})) if metadata is not None else {}
        if metadata is not None and not row:
            builder.warn(path, "no row in HAM10000_metadata.csv: grouped by its image id")
        row.pop("image_id", None)
        group = row.get(GROUP_COLUMN) or image_id
        builder.add(SampleRecord(image_id, path, masks.pop(image_id, None), None, group, row),
                    mask_expected=mask_dir is not None,
                    expected_mask=None if mask_dir is None else mask_dir / MASK_PATTERN.format(id=image_id))
    builder.orphan_masks(masks)


_DX = ("nv", "nv", "nv", "nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")
_SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "scalp")
_META, _IDS, _LESIONS = 1, 2, 3  # synthetic random streams (0 draws the images)


def _write(root: Path, counts: dict[str, int], seed: int, hw: tuple[int, int]) -> None:
    """1-3 images per lesion_id (images of one lesion share its shape and colour, as in the real set),
    split over both official image parts, and the metadata table."""
    from lesion_lightning.data import synthetic_draw as syn

    n = counts["train"]
    first_id = 24306  # the real HAM10000 ids start at ISIC_0024306
    rows: list[tuple[str, ...]] = []
    lesion_rng = syn.image_rng(seed, 0, _META)
    i = lesion_no = 0
    while i < n:
        per_lesion = min(n - i, int(lesion_rng.choice([1, 1, 2, 3])))
        lesion_id = f"HAM_{int(syn.image_rng(seed, lesion_no, _IDS).integers(0, 10_000)):07d}"
        while any(r[0] == lesion_id for r in rows):
            lesion_id = f"HAM_{(int(lesion_id[4:]) + 1) % 10_000_000:07d}"
        lesion = syn.random_lesion(syn.image_rng(seed, lesion_no, _LESIONS))
        dx = _DX[int(lesion_rng.integers(len(_DX)))]
        dx_type = "histo" if dx in ("mel", "bcc", "akiec") else str(
            lesion_rng.choice(["follow_up", "consensus", "histo"]))
        age = str(5 * int(lesion_rng.integers(4, 17)))
        sex = str(lesion_rng.choice(["male", "female"]))
        site = _SITES[int(lesion_rng.integers(len(_SITES)))]
        for _ in range(per_lesion):
            image_id = f"ISIC_{first_id + i:07d}"
            part = 1 if i < (n + 1) // 2 else 2  # both official parts are exercised
            image, mask = syn.render(lesion, syn.image_rng(seed, i), hw)
            syn.write_jpeg(root / IMAGE_FOLDERS[part - 1] / f"{image_id}.jpg", image)
            syn.write_mask_png(root / MASK_FOLDER / MASK_PATTERN.format(id=image_id), mask)
            rows.append((lesion_id, image_id, dx, dx_type, age, sex, site))
            i += 1
        lesion_no += 1
    with open(root / METADATA_NAMES[0], "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([GROUP_COLUMN, "image_id", "dx", "dx_type", "age", "sex", "localization"])
        out.writerows(rows)


SPEC = register_dataset(DatasetSpec(
    name="ham10000",
    label="HAM10000",
    layout="HAM10000_images_part_1/, HAM10000_images_part_2/, HAM10000_segmentations_lesion_tschandl/",
    scan=_scan,
    write_synthetic=_write,
    detect=_detect,
    group_by=GROUP_COLUMN,
    archives=(
        Archive("HAM10000_images_part_1.zip", f"{DATAVERSE}/3172585", into="HAM10000_images_part_1"),
        Archive("HAM10000_images_part_2.zip", f"{DATAVERSE}/3172584", into="HAM10000_images_part_2"),
        Archive("HAM10000_segmentations_lesion_tschandl.zip", f"{DATAVERSE}/3838943", into=MASK_FOLDER),
        # Dataverse ingests the CSV as a .tab file; format=original returns the uploaded CSV.
        Archive("HAM10000_metadata.csv", f"{DATAVERSE}/4338392?format=original", extract=False),
    ),
    sample_folder="ham10000",
))

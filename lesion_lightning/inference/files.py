"""Input files of the image stages: which files are images, which are masks, and the id of each.

One rule for every stage (`predict`, `explain`, `evaluate`, `cross-eval`): a file whose stem ends with a
dataset's mask suffix (`_segmentation` for the ISIC datasets and HAM10000, `_lesion` for PH2, `_mask`
for generic folders) is a mask, and its image id is the stem without that suffix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# Stripped (case-insensitively) from the end of a file stem to get the image id.
MASK_SUFFIXES = ("_segmentation", "_lesion", "_mask")


def image_id(path: Path) -> str:
    """`ISIC_0000001_segmentation.png` and `ISIC_0000001.jpg` both give `ISIC_0000001`."""
    stem = path.stem
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def looks_like_mask(path: Path) -> bool:
    return image_id(path) != path.stem


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files of `folder` (by extension, hidden files left out), sorted."""
    from lesion_lightning.data.io import IMAGE_EXTENSIONS

    found = sorted(folder.rglob("*") if recursive else folder.iterdir())
    return [p for p in found if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]


def collect_inputs(inputs: Iterable[Path], recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(image files in order, [(path, problem)] for inputs that are missing or not images).

    A folder's files named like masks are left out (and reported), so that a dataset folder holding images
    beside their masks predicts its images only; a file given by name is always taken."""
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item).expanduser()
        if item.is_dir():
            found = image_files(item, recursive)
            images = [p for p in found if not looks_like_mask(p)]
            if len(images) < len(found):
                problems.append((item, f"left out {len(found) - len(images)} mask file(s) (named *"
                                       + ", *".join(MASK_SUFFIXES) + ")"))
            if not images:
                problems.append((item, "folder holds no image files" + ("" if recursive else " (try --recursive)")))
            files += images
        elif item.is_file():
            files.append(item)
        else:
            problems.append((item, "no such file or folder"))
    seen: set[Path] = set()
    unique = [p for p in files if not (p.resolve() in seen or seen.add(p.resolve()))]
    return unique, problems


def assign_ids(files: list[Path]) -> list[str]:
    """Output ids: the file stem, disambiguated with the parent folder names when two stems collide."""
    stems = [p.stem for p in files]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    ids = []
    used: set[str] = set()
    for p, s in zip(files, stems):
        key = s if counts[s] == 1 else f"{p.parent.name}__{s}"
        base, n = key, 1
        while key in used:
            n += 1
            key = f"{base}_{n}"
        used.add(key)
        ids.append(key)
    return ids


def index_masks(folder: Path, role: str = "--gt", recursive: bool = True, mask_names: bool = True) -> dict[str, Path]:
    """image id -> mask file under `folder`: the one rule of `predict --gt` and `evaluate --gt` (and, with
    `mask_names=False` and flat, of `evaluate --pred`, where every image file is a prediction).

    Files named like masks (`<id>_segmentation.*`, `<id>_lesion.*`, `<id>_mask.*`) are the masks, so a
    dataset folder with images beside their masks (flat ISIC, PH2's tree) works; in a folder with no such
    file, every image file is a mask named by its id. Two masks for one id are an error naming both."""
    from lesion_lightning.data.errors import DataError

    if not folder.is_dir():
        raise DataError(folder, f"{role} folder not found")
    files = image_files(folder, recursive)
    masks = ([p for p in files if looks_like_mask(p)] or files) if mask_names else files
    out: dict[str, Path] = {}
    for path in masks:
        key = image_id(path)
        if key in out:
            raise DataError(path, f"two {role} files for image id {key!r}: {out[key]} and {path}")
        out[key] = path
    return out

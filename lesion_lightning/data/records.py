"""What a dataset reader yields: one `SampleRecord` per image, plus the structural problems it met."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SampleRecord", "Problem", "DatasetScan"]


@dataclass(frozen=True)
class SampleRecord:
    """One image of a dataset and its lesion mask.

    `subset` is the official subset ("train"/"val"/"test") or None when the dataset has none;
    `group` is the key splits keep together (HAM10000: lesion_id; otherwise the image id);
    `mask_path` is None when no mask was found (usable for prediction only);
    `mask_encoding` is how its mask file stores the lesion (see `lesion_lightning.data.io.load_mask`).
    """

    id: str
    image_path: Path
    mask_path: Path | None
    subset: str | None = None
    group: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    mask_encoding: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))
        if self.mask_path is not None:
            object.__setattr__(self, "mask_path", Path(self.mask_path))
        if not self.group:
            object.__setattr__(self, "group", self.id)


@dataclass(frozen=True)
class Problem:
    """One problem with one file: what `check-data` prints and `--json` lists."""

    file: str
    problem: str
    record_id: str | None = field(default=None, compare=False)  # the image id it concerns, when there is one

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "problem": self.problem}


@dataclass
class DatasetScan:
    """Everything a reader found in a dataset folder, before any pixel is decoded.

    `records`: one per image (sorted by id, first occurrence of a duplicated id kept);
    `problems`: structural problems (missing mask, mask without image, duplicate id);
    `warnings`: things worth knowing that do not make the data wrong (ignored files, no metadata row);
    `unlabelled_subsets`: official subsets whose ground-truth folder is absent (prediction only).
    """

    dataset: str
    root: Path
    records: list[SampleRecord]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    unlabelled_subsets: list[str] = field(default_factory=list)

    def problems_by_id(self) -> dict[str, list[Problem]]:
        """Structural problems grouped by the image id they concern (problems of no image are left out)."""
        out: dict[str, list[Problem]] = {}
        for p in self.problems:
            if p.record_id is not None:
                out.setdefault(p.record_id, []).append(p)
        return out

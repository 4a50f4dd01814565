"""`DatasetSpec`: everything the framework knows about one dataset, registered by name.

One module of this package per dataset holds its spec: folder names and file patterns (its reader),
official subsets, grouping metadata, the synthetic writer, download archives and the embedded sample
folder. Everything else (readers, splits, synthetic data, download, the datamodule, cross-eval, the
table specs) asks the registry instead of keeping its own list of names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["Archive", "DatasetSpec", "get_dataset_spec", "list_datasets", "register_dataset", "SUBSETS"]

SUBSETS = ("train", "val", "test")


@dataclass(frozen=True)
class Archive:
    """One file of a dataset's distribution."""

    filename: str  # name it is saved under (and its name under base_url)
    url: str
    into: str | None = None  # folder (under root) its contents belong in; None: root itself
    subset: str | None = None  # official subset it holds (train/val/test), None: always needed
    size: int | None = None  # bytes, when known for sure
    sha256: str | None = None
    md5: str | None = None
    extract: bool = True  # False: a plain file saved as root/filename (e.g. metadata)


# scan(builder, subsets, options): add the records under builder.root (see lesion_lightning.data.layout).
ScanFn = Callable[[Any, "list[str] | None", dict[str, Any]], None]
# write(root, counts {subset: n}, seed, (h, w)): a synthetic dataset in this layout.
WriteFn = Callable[[Path, dict[str, int], int, tuple[int, int]], None]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. `official_subsets`: subset -> (image folder, ground-truth folder), empty when the
    dataset has none; `fixed_layout`: False when the layout comes from reader options (`folder`)."""

    name: str
    label: str  # how tables print it ("ISIC 2018")
    layout: str  # one line: the folders the reader expects (errors, docs)
    scan: ScanFn
    write_synthetic: WriteFn
    detect: Callable[[Path], bool]  # does this folder look like the dataset?
    official_subsets: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    group_by: str | None = None  # metadata column keeping images of one lesion together in splits
    reader_options: Mapping[str, Any] = field(default_factory=dict)  # accepted options -> defaults
    synthetic_images: int | Mapping[str, int] = 56  # the stand-in written when no root is given
    archives: tuple[Archive, ...] = ()
    sample_folder: str | None = None  # folder of the real sample under ../shared/data
    fixed_layout: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "official_subsets", MappingProxyType(dict(self.official_subsets)))
        object.__setattr__(self, "reader_options", MappingProxyType(dict(self.reader_options)))

    @property
    def has_official_subsets(self) -> bool:
        return bool(self.official_subsets)

    def check_subsets(self, subsets: Any, option: str = "subsets") -> None:
        """The one rule for a subset restriction: known subset names, and only for datasets that have them
        (an option-driven layout's reader decides from its options)."""
        bad = [s for s in subsets if s not in SUBSETS]
        if bad:
            raise ValueError(f"{option}: unknown subset(s) {bad}; use {', '.join(SUBSETS)}")
        if not self.has_official_subsets and self.fixed_layout:
            raise ValueError(f"{option}: dataset {self.name!r} has no official subsets")

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The reader options with defaults filled in; unknown ones raise naming the allowed ones."""
        unknown = sorted(set(given) - set(self.reader_options))
        if unknown:
            allowed = sorted(self.reader_options)
            raise ValueError(f"unknown reader option(s) {unknown} for dataset {self.name!r}"
                             + (f"; allowed: {allowed}" if allowed else " (it takes none)"))
        return {**self.reader_options, **given}


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add `spec` to the registry (a module's `SPEC = register_dataset(DatasetSpec(...))`)."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing is not spec:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets(*, fixed_layout: bool | None = None) -> tuple[str, ...]:
    """Registered names in registration order; `fixed_layout=True` leaves out option-driven layouts."""
    return tuple(n for n, s in _REGISTRY.items() if fixed_layout is None or s.fixed_layout == fixed_layout)


def get_dataset_spec(name: str, option: str = "dataset") -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"{option}: unknown {name!r}; choose one of {', '.join(_REGISTRY)}") from None

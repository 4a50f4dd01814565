"""Reproducible, grouped train/val/test splits and their JSON manifests.

Schemes (each paper's protocol):

- ``80-10-10`` (LANET): random 80/10/10 train/val/test of the pool; default pool: every official
  subset that has ground truth (ISIC 2018: 2594+100+1000 = 3694, ISIC 2017: 2000+150+600 = 2750).
- ``70-30`` (SCSONet): train/test; default pool: official train + val (ISIC 2018 2694 -> 1886/808,
  ISIC 2017 2150 -> 1500/650, the paper's own counts).
- ``80-20`` (SLSNet): train/val of the official training set; where the dataset has an official
  val subset with ground truth outside the pool, it is the test subset (SLSNet Table 4: ISIC 2018
  2594 -> 2075/519, scored on the 100 official validation images).
- ``official``: the dataset's own train/val/test folders (those with ground truth).
- ``kfold``: `folds` folds; fold `fold` is val, the rest train; each id is in exactly one val fold.
  Default pool: every official subset with ground truth.

Datasets without official subsets (HAM10000, PH2, folder) pool every record.

Sizes: for N pooled images a subset of fraction f gets round-half-up(f * N) images (at least one
each for val/test when N >= 3, so tiny samples still evaluate); train takes the rest. So
80-10-10 of 3694 -> 2956/369/369, of 2750 -> 2200/275/275, of 30 -> 24/3/3, of 12 -> 10/1/1.
Where a paper published its own counts for a pool size (SCSONet's 2150 -> 1500/650, which is not
7:3 rounded) those counts are used.

Grouping: records sharing a `group` (HAM10000's lesion_id) always land in the same subset; the sizes
are then met as closely as whole groups allow.

Determinism: groups are ordered by sha256(seed, group), which is the same on any machine, Python or
numpy version, and independent of the order the records come in; ids are stored sorted.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_lightning.data.errors import DataError
from lesion_lightning.data.records import SampleRecord

__all__ = ["SCHEMES", "SplitManifest", "make_split", "dataset_fingerprint", "split_sizes", "default_pool"]

SCHEMES = ("80-10-10", "70-30", "80-20", "official", "kfold")

# scheme -> (subset, fraction) for the fractional schemes; train takes the rest.
_FRACTIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "80-10-10": (("val", 0.1), ("test", 0.1)),
    "70-30": (("test", 0.3),),
    "80-20": (("val", 0.2),),
}
# scheme -> official subsets pooled by default (the papers' protocols)
_DEFAULT_POOLS: dict[str, tuple[str, ...] | None] = {
    "80-10-10": None,  # None: every subset with ground truth
    "70-30": ("train", "val"),
    "80-20": ("train",),
    "official": None,
    "kfold": None,
}
# (scheme, pool size) -> counts a paper published (used instead of rounding)
PUBLISHED_SIZES: dict[tuple[str, int], dict[str, int]] = {
    ("70-30", 2150): {"train": 1500, "test": 650},  # SCSONet, ISIC 2017 train+val
    ("70-30", 2694): {"train": 1886, "test": 808},  # SCSONet, ISIC 2018 train+val
}
_SUBSET_ORDER = ("train", "val", "test")


@dataclass
class SplitManifest:
    """A split as written to JSON: ids of each subset plus the dataset fingerprint."""

    dataset: str
    scheme: str
    seed: int
    subsets: dict[str, list[str]]
    fingerprint: str
    fold: int | None = None
    folds: int | None = None
    path: Path | None = field(default=None, compare=False, repr=False)  # where it was loaded from

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "scheme": self.scheme, "seed": self.seed}
        if self.fold is not None:
            out["fold"] = self.fold
            out["folds"] = self.folds
        out["subsets"] = {k: list(v) for k, v in self.subsets.items()}
        out["fingerprint"] = self.fingerprint
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SplitManifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise DataError(path, "split manifest not found") from exc
        except (OSError, ValueError) as exc:
            raise DataError(path, f"unreadable split manifest: {exc}") from exc
        if not isinstance(data, dict):
            raise DataError(path, "split manifest must be a JSON object")
        missing = [k for k in ("dataset", "scheme", "subsets") if k not in data]
        if missing:
            raise DataError(path, f"split manifest lacks {', '.join(missing)}")
        subsets = data["subsets"]
        if not isinstance(subsets, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in subsets.values()
        ):
            raise DataError(path, "split manifest 'subsets' must map subset names to lists of ids")
        seen: dict[str, str] = {}
        for name, ids in subsets.items():
            for i in ids:
                if i in seen:
                    raise DataError(path, f"id {i} is in both {seen[i]!r} and {name!r}")
                seen[i] = name
        return cls(
            dataset=str(data["dataset"]), scheme=str(data["scheme"]), seed=int(data.get("seed", 0)),
            subsets={k: list(v) for k, v in subsets.items()}, fingerprint=str(data.get("fingerprint", "")),
            fold=data.get("fold"), folds=data.get("folds"), path=path,
        )

    @property
    def ids(self) -> list[str]:
        return sorted(i for ids in self.subsets.values() for i in ids)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.subsets.items()}

    def check_against(self, records: Sequence[SampleRecord], dataset: str | None = None) -> None:
        """Refuse (DataError naming the manifest) a manifest whose ids are not all in `records`, or that
        puts images of one group (HAM10000's lesion_id, from the current metadata) in two subsets.

        A changed fingerprint with every id present (files re-encoded, say) only warns.
        """
        where = self.path if self.path is not None else Path(f"<split manifest {self.dataset}/{self.scheme}>")
        if dataset is not None and self.dataset and dataset != self.dataset:
            raise DataError(where, f"split manifest is for dataset {self.dataset!r}, not {dataset!r}")
        present = {r.id for r in records}
        missing = [i for i in self.ids if i not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
            raise DataError(where, f"{len(missing)} id(s) of the split manifest are not in the dataset: {shown}")
        self._check_groups(records, where)
        if self.fingerprint:
            by_id = {r.id: r for r in records}
            now = dataset_fingerprint(by_id[i] for i in self.ids)
            if now != self.fingerprint:
                warnings.warn(f"{where}: dataset fingerprint changed since the split was made (files differ in size); "
                              "the split's ids are all present, so it is reused", UserWarning, stacklevel=2)


    def _check_groups(self, records: Sequence[SampleRecord], where: Path) -> None:
        subset_of = {i: name for name, ids in self.subsets.items() for i in ids}
        members: dict[str, list[SampleRecord]] = {}
        for r in records:
            if r.id in subset_of:
                members.setdefault(r.group, []).append(r)
        leaks = {g: rs for g, rs in sorted(members.items()) if len({subset_of[r.id] for r in rs}) > 1}
        if not leaks:
            return
        group, leaked = next(iter(leaks.items()))
        files = ", ".join(f"{r.image_path} ({subset_of[r.id]})" for r in sorted(leaked, key=lambda r: r.id))
        more = f"; {len(leaks) - 1} more group(s) leak likewise" if len(leaks) > 1 else ""
        raise DataError(where, f"split manifest puts images of lesion {group} in several subsets: {files}{more}. "
                               "The dataset's metadata groups them; make a new split (lesion-lightning split)")


def _file_size(path: Path | None) -> int:
    if path is None:
        return -1
    try:
        return path.stat().st_size
    except OSError:
        return -1


def dataset_fingerprint(records: Iterable[SampleRecord]) -> str:
    """sha256 over the sorted ids with their image and mask file sizes (-1 for an absent file)."""
    lines = sorted(f"{r.id}\t{_file_size(r.image_path)}\t{_file_size(r.mask_path)}\n" for r in records)
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def _round_half_up(x: float) -> int:
    return int(x + 0.5 + 1e-9)


def split_sizes(scheme: str, n: int) -> dict[str, int]:
    """Target image counts per subset for a fractional scheme on a pool of `n` images."""
    if scheme not in _FRACTIONS:
        raise ValueError(f"scheme: {scheme!r} has no fixed sizes; fractional schemes are {', '.join(_FRACTIONS)}")
    published = PUBLISHED_SIZES.get((scheme, n))
    if published is not None:
        return dict(published)
    sizes: dict[str, int] = {}
    for subset, fraction in _FRACTIONS[scheme]:
        k = _round_half_up(fraction * n)
        if n >= 3:
            k = max(1, k)
        sizes[subset] = k
    rest = n - sum(sizes.values())
    if rest < 0:
        raise ValueError(f"scheme {scheme}: {n} images are too few")
    return {"train": rest, **sizes}


def default_pool(scheme: str, records: Sequence[SampleRecord]) -> list[str] | None:
    """Official subsets a scheme pools by default, or None for a dataset without official subsets."""
    present = sorted({r.subset for r in records if r.subset is not None}, key=_SUBSET_ORDER.index)
    if not present:
        return None
    labelled = [s for s in present if any(r.mask_path is not None for r in records if r.subset == s)]
    wanted = _DEFAULT_POOLS[scheme]
    return labelled if wanted is None else [s for s in wanted if s in labelled]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def _groups(records: Sequence[SampleRecord], seed: int) -> list[tuple[str, list[str]]]:
    """(group, sorted ids) in the seeded hash order."""
    members: dict[str, list[str]] = {}
    for r in records:
        members.setdefault(r.group or r.id, []).append(r.id)
    return [(g, sorted(members[g])) for g in sorted(members, key=lambda g: (_rank(seed, g), g))]


def _fill(groups: list[tuple[str, list[str]]], targets: dict[str, int]) -> dict[str, list[str]]:
    """Assign whole groups: each non-train subset (in `targets` order) takes groups in hash order while
    they fit its target (or the first group, if nothing fits and it would stay empty); train gets the rest."""
    remaining = list(groups)
    out: dict[str, list[str]] = {}
    for subset, target in targets.items():
        if subset == "train":
            continue
        taken: list[str] = []
        keep: list[tuple[str, list[str]]] = []
        for group in remaining:
            if len(taken) < target and len(taken) + len(group[1]) <= target:
                taken.extend(group[1])
            else:
                keep.append(group)
        if not taken and target > 0 and len(keep) > 1:
            smallest = min(range(len(keep)), key=lambda i: len(keep[i][1]))
            taken.extend(keep.pop(smallest)[1])
        remaining = keep
        out[subset] = sorted(taken)
    out["train"] = sorted(i for _, ids in remaining for i in ids)
    return {s: out[s] for s in _SUBSET_ORDER if s in out}


def _check_records(records: Sequence[SampleRecord], dataset: str) -> None:
    if not records:
        raise DataError(dataset or "<records>", "empty dataset: nothing to split")
    counts = Counter(r.id for r in records)
    if len(counts) != len(records):
        dup = sorted(i for i, n in counts.items() if n > 1)[:5]
        raise DataError(dataset or "<records>", f"duplicate ids cannot be split: {', '.join(dup)}")


def _pool(records: Sequence[SampleRecord], scheme: str, pool: Sequence[str] | None,
          dataset: str) -> tuple[list[str] | None, list[SampleRecord]]:
    """(the official subsets drawn from, or None for all records; the records drawn from)."""
    present = sorted({r.subset for r in records if r.subset is not None}, key=_SUBSET_ORDER.index)
    if pool is not None:
        if not present:
            raise ValueError(f"pool: dataset {dataset or '(records)'} has no official subsets to pool")
        bad = [s for s in pool if s not in present]
        if bad:
            raise ValueError(f"pool: subset(s) {bad} not in the dataset (it has {', '.join(present)})")
        chosen: list[str] | None = list(pool)
    else:
        chosen = default_pool(scheme, records)
    if chosen is None:
        return None, list(records)
    if not chosen:
        raise DataError(dataset or "<records>", f"scheme {scheme}: no official subset with ground truth to pool "
                        f"(the dataset has {', '.join(present)})")
    return chosen, [r for r in records if r.subset in chosen]


def _kfold_subsets(pooled: list[SampleRecord], seed: int, fold: int, folds: int) -> dict[str, list[str]]:
    groups = _groups(pooled, seed)
    if folds < 2:
        raise ValueError(f"folds: must be at least 2, got {folds}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold: must be in 0..{folds - 1}, got {fold}")
    if len(groups) < folds:
        raise ValueError(f"folds: {folds} folds need at least {folds} groups; the pool has {len(groups)}")
    assigned: list[list[str]] = [[] for _ in range(folds)]
    for _, members in groups:  # hash order, each group to the currently smallest fold
        k = min(range(folds), key=lambda i: (len(assigned[i]), i))
        assigned[k].extend(members)
    return {"train": sorted(i for k in range(folds) if k != fold for i in assigned[k]), "val": sorted(assigned[fold])}


def _fraction_subsets(pooled: list[SampleRecord], scheme: str, seed: int,
                      sizes: Mapping[str, int] | None) -> dict[str, list[str]]:
    targets = dict(sizes) if sizes is not None else split_sizes(scheme, len(pooled))
    expected = {"train", *(s for s, _ in _FRACTIONS[scheme])}
    if set(targets) != expected or sum(targets.values()) != len(pooled) or min(targets.values()) < 0:
        raise ValueError(f"sizes: {dict(targets)} must give {sorted(expected)} summing to the pool size "
                         f"{len(pooled)}")
    order = {"train": 0, "val": 1, "test": 2}
    targets = dict(sorted(targets.items(), key=lambda kv: -order[kv[0]]))  # test before val
    return _fill(_groups(pooled, seed), targets)


def make_split(
    records: Sequence[SampleRecord],
    scheme: str,
    *,
    seed: int = 42,
    fold: int = 0,
    folds: int = 5,
    pool: Sequence[str] | None = None,
    dataset: str = "",
    sizes: Mapping[str, int] | None = None,
) -> SplitManifest:
    """Split `records` by `scheme` (see module doc) into a `SplitManifest`.

    `pool`: official subsets to draw from (default: the scheme's paper protocol); `sizes`: explicit
    image counts per subset for the fractional schemes, overriding the rounding rule.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: unknown {scheme!r}; choose one of {', '.join(SCHEMES)}")
    _check_records(records, dataset)
    chosen, pooled = _pool(records, scheme, pool, dataset)
    fold_value: int | None = None
    folds_value: int | None = None
    if scheme == "official":
        if chosen is None:
            raise ValueError(f"scheme official: dataset {dataset or '(records)'} has no official subsets; "
                             "use 80-10-10, 70-30, 80-20 or kfold")
        subsets = {s: sorted(r.id for r in pooled if r.subset == s) for s in _SUBSET_ORDER if s in chosen}
    elif scheme == "kfold":
        subsets = _kfold_subsets(pooled, seed, fold, folds)
        fold_value, folds_value = fold, folds
    else:
        subsets = _fraction_subsets(pooled, scheme, seed, sizes)
        if scheme == "80-20" and chosen is not None and "val" not in chosen:
            # SLSNet Table 4: the official validation images (with masks) are the scored test set
            held_out = [r for r in records if r.subset == "val" and r.mask_path is not None]
            if held_out:
                subsets["test"] = sorted(r.id for r in held_out)
                pooled = pooled + held_out
    used = {i for v in subsets.values() for i in v}
    fingerprint = dataset_fingerprint(r for r in pooled if r.id in used)
    return SplitManifest(dataset=dataset, scheme=scheme, seed=int(seed), subsets=subsets, fingerprint=fingerprint,
                         fold=fold_value, folds=folds_value)

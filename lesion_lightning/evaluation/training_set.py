"""The images a trained model saw (its training set) and the labelled images of a test dataset."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets import get_dataset_spec
from lesion_lightning.data.errors import DataError
from lesion_lightning.evaluation.cross_options import CrossEvalError


@dataclass
class TrainingSet:
    dataset: str | None
    root: Path | None
    seen_subsets: list[str]
    records: list[Any] = field(default_factory=list)
    split_path: Path | None = None
    missing_ids: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "root": None if self.root is None else str(self.root),
                "seen_subsets": self.seen_subsets, "num_seen": len(self.records),
                "split": None if self.split_path is None else str(self.split_path),
                "missing_ids": self.missing_ids, "note": self.note}


def cache_dir_of(cache: str | None) -> Path:
    from lesion_lightning.data.cache import default_cache_dir

    return Path(cache).expanduser() if cache else default_cache_dir()


def default_root(dataset: str, cache_dir: Path) -> tuple[Path, str]:
    """(root, source) of the embedded default data of `dataset`: the real sample, else synthetic."""
    from lesion_lightning.data.datamodule import LesionDataModule
    from lesion_lightning.paths import sample_dataset_root

    sample = sample_dataset_root(dataset)
    if sample is not None:
        return sample, "embedded sample (../shared/data)"
    dm = LesionDataModule(dataset=dataset, root=None, cache=str(cache_dir))
    return dm.resolve_root(), "synthetic stand-in (no real data found)"


# How a test dataset's data was found: the `data_source` of its entry in every output.
GIVEN, SAMPLE, SYNTHETIC = "given root", "embedded sample", "synthetic"


def test_root(dataset: str, data_roots: dict[str, Path], cache_dir: Path, synthetic: bool) -> tuple[Path, str, str]:
    """(root, where it came from, data source) of a test dataset: `data_roots`, else the embedded real sample;
    else its synthetic stand-in, only when asked for (`synthetic`), since a synthetic score is no real one."""
    from lesion_lightning.paths import sample_dataset_root

    if dataset in data_roots:
        return data_roots[dataset], "--data-roots", GIVEN
    if sample_dataset_root(dataset) is not None:
        root, note = default_root(dataset, cache_dir)
        return root, note, SAMPLE
    if not synthetic:
        raise DataError(Path(dataset), f"no data: give --data-roots {dataset}=DIR (no embedded sample of {dataset} "
                                       "exists), or --synthetic to score a synthetic stand-in, marked as such")
    root, note = default_root(dataset, cache_dir)
    return root, note, SYNTHETIC


def resolve_training_set(loaded: Any, *, train_root: Path | None, seen: list[str], cache_dir: Path) -> TrainingSet:
    """The images the model saw in training: split.json ids of the `seen` subsets under the run's root."""
    from lesion_lightning.data.readers import scan_dataset
    from lesion_lightning.data.splits import SplitManifest

    split_path = loaded.split_path
    data_cfg = dict(loaded.datamodule_hparams or {}) or dict((loaded.run_config or {}).get("data") or {})
    if split_path is None or not split_path.is_file():
        if train_root is None:
            raise CrossEvalError(
                f"--ckpt {loaded.checkpoint_path}: no split.json beside this checkpoint, so the training images are "
                "unknown; give --train-root DIR (every image there counts as seen) or a run folder")
        dataset = data_cfg.get("dataset")
        from lesion_lightning.data.readers import detect_layout

        dataset = dataset or detect_layout(train_root)
        if dataset is None:
            raise CrossEvalError(f"--train-root {train_root}: cannot tell its dataset layout")
        records = scan_dataset(dataset, train_root, **(data_cfg.get("reader_options") or {})).records
        return TrainingSet(dataset, train_root, ["all"], records, None,
                           note="no split.json: every image of --train-root counts as seen")
    manifest = SplitManifest.load(split_path)
    dataset = manifest.dataset or data_cfg.get("dataset")
    unknown = [s for s in seen if s not in manifest.subsets]
    if len(unknown) == len(seen):
        raise CrossEvalError(f"--seen {','.join(seen)}: {split_path} has subsets {', '.join(manifest.subsets)}")
    if train_root is not None:
        root, note = train_root, "--train-root"
    elif data_cfg.get("root"):
        root, note = Path(str(data_cfg["root"])).expanduser(), "run config data.root"
    else:
        cfg_cache = data_cfg.get("cache")
        cache = Path(str(cfg_cache)).expanduser() if isinstance(cfg_cache, str) and cfg_cache else cache_dir
        root, note = default_root(dataset, cache)
    if not root.is_dir():
        raise CrossEvalError(f"training dataset root {root} ({note}) not found; give --train-root DIR")
    scan = scan_dataset(dataset, root, **(data_cfg.get("reader_options") or {}))
    by_id = {r.id: r for r in scan.records}
    ids = [i for s in seen if s in manifest.subsets for i in manifest.subsets[s]]
    missing = sorted(i for i in ids if i not in by_id)
    if missing:
        warnings.warn(f"{split_path}: {len(missing)} seen id(s) are not under {root}; they cannot be matched by "
                      "content", UserWarning, stacklevel=2)
    records = [by_id[i] for i in ids if i in by_id]
    return TrainingSet(dataset, root, [s for s in seen if s in manifest.subsets], records, split_path, missing,
                       note=f"root from {note}")


def test_records(dataset: str, root: Path, subsets: list[str] | None) -> tuple[list[Any], int]:
    """Labelled records of a test dataset and how many unlabelled ones were left out."""
    from lesion_lightning.data.readers import scan_dataset

    use_subsets = subsets if get_dataset_spec(dataset).has_official_subsets else None
    scan = scan_dataset(dataset, root, subsets=use_subsets)
    labelled = [r for r in scan.records if r.mask_path is not None]
    if not labelled:
        raise DataError(root, f"no labelled image (image with a mask) in this {dataset} dataset")
    return labelled, len(scan.records) - len(labelled)

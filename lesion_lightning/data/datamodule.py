"""`LesionDataModule`: dataset folder -> split -> validated records -> cached, augmented DataLoaders."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lesion_lightning.data.cache import DecodeCache, default_cache_dir
from lesion_lightning.data.checks import check_records
from lesion_lightning.data.dataset import LesionDataset, seed_worker
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.datasets import get_dataset_spec
from lesion_lightning.data.readers import scan_dataset
from lesion_lightning.data.sizes import parse_size
from lesion_lightning.data.records import DatasetScan, Problem, SampleRecord
from lesion_lightning.data.samplers import EpochSeededRandomSampler
from lesion_lightning.data.splits import SCHEMES, SplitManifest, dataset_fingerprint, make_split
from lesion_lightning.data.transforms import TRANSFORM_SET_NAMES, build_transforms
from lesion_lightning.paths import sample_dataset_root

__all__ = ["LesionDataModule"]

log = logging.getLogger(__name__)

SYNTHETIC_SIZE = (192, 256)  # the stand-in's size; its image count is each dataset spec's synthetic_images
SYNTHETIC_VERSION = 1
BAD_SAMPLE_POLICIES = ("error", "skip")
MAX_LISTED_PROBLEMS = 20


def _writable_or_none(folder: Path | None) -> Path | None:
    """`folder` when a file can be written in it; else None with a warning: a read-only or unusable cache
    folder costs speed, never the run."""
    if folder is None:
        return None
    probe = folder / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
        return folder
    except OSError as exc:
        message = f"{folder}: cache folder not writable ({exc.strerror or exc}); running without a cache"
        log.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
        return None


def _check_options(dataset: str, split: str, fold: int, folds: int, augment: str, on_bad_sample: str,
                   batch_size: int, num_workers: int) -> None:
    """One-line errors for the DataModule's options, before anything is read."""
    get_dataset_spec(dataset)  # unknown names fail here, naming the registered ones
    if split not in SCHEMES and not Path(split).expanduser().is_file():
        if split.lower().endswith(".json"):
            raise ValueError(f"split: manifest file not found: {split}")
        raise ValueError(f"split: unknown scheme {split!r}; choose one of {', '.join(SCHEMES)} "
                         "or give the path of a split manifest (.json)")
    if split == "kfold" and not (folds >= 2 and 0 <= fold < folds):
        raise ValueError(f"fold/folds: need folds >= 2 and 0 <= fold < folds, got fold={fold}, folds={folds}")
    if augment not in TRANSFORM_SET_NAMES:
        raise ValueError(f"augment: unknown transform set {augment!r}; choose one of {', '.join(TRANSFORM_SET_NAMES)}")
    if on_bad_sample not in BAD_SAMPLE_POLICIES:
        raise ValueError(f"on_bad_sample: {on_bad_sample!r}; choose one of {', '.join(BAD_SAMPLE_POLICIES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers: must be >= 0, got {num_workers}")


class LesionDataModule(pl.LightningDataModule):
    """Train/val/test/predict loaders for one dataset and one split.

    Args:
        dataset: a registered dataset (lesion_lightning.data.datasets): isic2018, isic2017, ham10000, ph2,
            folder, ...
        root: dataset root folder in its official layout. None: the embedded default data, i.e. the
            real sample of that dataset in ../shared/data when present, else a synthetic dataset in
            that layout generated once into the cache folder.
        split: a scheme (80-10-10, 70-30, 80-20, official, kfold) or the path of a split manifest
            JSON (reused as is; refused when its ids are not in the dataset).
        seed: split seed (also seeds the training sampler's shuffling).
        fold: validation fold index for split=kfold.
        folds: number of folds for split=kfold.
        pool: official subsets the split draws from (default: the scheme's paper protocol).
        image_size: working size, an int (square) or [height, width].
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        augment: the paper's transform set: working-size default, normalisation, training augmentation
            (none, lanet, medlitenet, slsnet, scsonet, unet_aksoy; lesion_lightning.data.transforms).
        cache: decode-once cache: true = `$LESION_LIGHTNING_CACHE` or `.cache/lesion-lightning` under
            the working directory, false = decode every time, or a folder path.
        on_bad_sample: "error" stops in setup (before any training step) listing every problem of the
            records the split uses; "skip" drops those records and warns how many.
        pin_memory: DataLoader pin_memory (for GPU training).
        reader_options: the dataset's reader options (`folder`: image_dir, mask_dir, mask_pattern,
            subset_dirs, metadata, id_column, group_column, mask_encoding).

    After `setup()`: `manifest` (the SplitManifest used), `records` (id -> record), `skipped`
    (problems of dropped records), `dataset_root`.
    """

    def __init__(
        self,
        dataset: str = "ham10000",
        root: str | None = None,
        split: str = "80-10-10",
        seed: int = 42,
        fold: int = 0,
        folds: int = 5,
        pool: list[str] | None = None,
        image_size: int | list[int] = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: str = "none",
        cache: bool | str = True,
        on_bad_sample: str = "error",
        pin_memory: bool = False,
        reader_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_options(dataset, split, fold, folds, augment, on_bad_sample, batch_size, num_workers)
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = root
        self.split = split
        self.seed = seed
        self.fold = fold
        self.folds = folds
        self.pool = list(pool) if pool is not None else None
        self.image_size = parse_size(image_size)
        self.train_image_size = self.image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.on_bad_sample = on_bad_sample
        self.pin_memory = pin_memory
        self.reader_options = dict(reader_options or {})
        if cache is True:
            self.cache_dir: Path | None = default_cache_dir()
        elif cache is False or cache is None or cache == "":
            self.cache_dir = None
        else:
            self.cache_dir = Path(str(cache)).expanduser()

        self.dataset_root: Path | None = None
        self.scan: DatasetScan | None = None
        self.manifest: SplitManifest | None = None
        self.records: dict[str, SampleRecord] = {}
        self.skipped: list[Problem] = []
        self.datasets: dict[str, LesionDataset] = {}

    # -- root ------------------------------------------------------------------------------------
    def resolve_root(self) -> Path:
        """The dataset folder: `root`, else the real sample, else the synthetic stand-in (generated once)."""
        if self.root is not None:
            return Path(self.root).expanduser()
        sample = sample_dataset_root(self.dataset)
        if sample is not None:
            return sample
        return self._synthetic_root()

    def _synthetic_root(self) -> Path:
        from lesion_lightning.data.synthetic import write_dataset

        stand_in = get_dataset_spec(self.dataset).synthetic_images
        h, w = SYNTHETIC_SIZE
        count = sum(stand_in.values()) if isinstance(stand_in, Mapping) else stand_in
        base = (self.cache_dir or default_cache_dir()) / "synthetic"
        target = base / f"{self.dataset}-n{count}-{h}x{w}-seed0-v{SYNTHETIC_VERSION}"
        if (target / ".complete").exists():
            return target
        log.info("generating the synthetic %s stand-in dataset in %s", self.dataset, target)
        tmp = base / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        if isinstance(stand_in, Mapping):
            write_dataset(tmp, self.dataset, seed=0, image_size=SYNTHETIC_SIZE, subsets=dict(stand_in))
        else:
            write_dataset(tmp, self.dataset, num_images=stand_in, seed=0, image_size=SYNTHETIC_SIZE)
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: theirs is identical (deterministic generator)
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def prepare_data(self) -> None:
        # Rank 0 only: generates the synthetic stand-in when needed, before the ranks' setup().
        self.resolve_root()

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.manifest is not None:
            return  # fit then test on the same module: the split and checks are done
        self.cache_dir = _writable_or_none(self.cache_dir)
        root = self.resolve_root()
        scan = scan_dataset(self.dataset, root, **self.reader_options)
        if isinstance(self.split, str) and self.split in SCHEMES:
            manifest = make_split(scan.records, self.split, seed=self.seed, fold=self.fold, folds=self.folds,
                                  pool=self.pool, dataset=self.dataset)
        else:
            manifest = SplitManifest.load(Path(self.split).expanduser())
            manifest.check_against(scan.records, dataset=self.dataset)
        records = {r.id: r for r in scan.records}
        problems = self._validate([records[i] for i in manifest.ids], scan)
        if problems:
            self._handle_problems(problems, manifest, root, records)
        self.dataset_root, self.scan, self.manifest, self.records = root, scan, manifest, records
        self._build_datasets()

    def _validate(self, used: list[SampleRecord], scan: DatasetScan) -> dict[str, list[Problem]]:
        """Problems of the records the split uses: structural (from the scan) and decoded (checks)."""
        structural = scan.problems_by_id()
        problems: dict[str, list[Problem]] = {}
        to_decode: list[SampleRecord] = []
        for r in used:
            found = list(structural.get(r.id, []))
            if r.mask_path is None and not any("missing mask" in p.problem for p in found):
                found.append(Problem(str(r.image_path), "missing mask", r.id))
            if found:
                problems[r.id] = found
            else:
                to_decode.append(r)
        memo = self.cache_dir / "validated.json" if self.cache_dir is not None else None
        for result in check_records(to_decode, memo_path=memo):
            if result.problems:
                problems[result.id] = result.problems
        return problems

    def _handle_problems(self, problems: dict[str, list[Problem]], manifest: SplitManifest, root: Path,
                         records: dict[str, SampleRecord]) -> None:
        flat = [p for rid in sorted(problems) for p in problems[rid]]
        lines = [f"  {p.file}: {p.problem}" for p in flat[:MAX_LISTED_PROBLEMS]]
        if len(flat) > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {len(flat) - MAX_LISTED_PROBLEMS} more")
        if self.on_bad_sample == "error":
            raise DataError(root, f"{len(problems)} of the {len(manifest.ids)} images used by split {self.split!r} "
                            f"have problems:\n" + "\n".join(lines) +
                            f"\nRun `lesion-lightning check-data --dataset {self.dataset} --root {root}` for the full "
                            "report, fix the files, or set data.on_bad_sample=skip to leave them out.")
        bad = set(problems)
        for name, ids in manifest.subsets.items():
            manifest.subsets[name] = [i for i in ids if i not in bad]
        manifest.fingerprint = dataset_fingerprint(records[i] for i in manifest.ids)
        self.skipped = flat
        message = (f"on_bad_sample=skip: skipped {len(bad)} of {len(bad) + len(manifest.ids)} images of split "
                   f"{self.split!r} with problems:\n" + "\n".join(lines))
        log.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)

    # -- datasets --------------------------------------------------------------------------------
    def _cache(self, size: tuple[int, int]) -> DecodeCache | None:
        return DecodeCache(self.cache_dir / "decoded", size) if self.cache_dir is not None else None

    def _subset_records(self, name: str) -> list[SampleRecord]:
        assert self.manifest is not None
        return [self.records[i] for i in self.manifest.subsets.get(name, [])]

    def _build_datasets(self) -> None:
        assert self.manifest is not None
        eval_cache = self._cache(self.image_size)
        self.datasets = {
            "train": LesionDataset(self._subset_records("train"), transform=self._train_transform(),
                                   cache=self._cache(self._train_decode_size()), image_size=self._train_decode_size()),
        }
        for name in ("val", "test"):
            self.datasets[name] = LesionDataset(self._subset_records(name), transform=self._eval_transform(),
                                                cache=eval_cache, image_size=self.image_size)
        predict = self._subset_records("test") or [self.records[i] for i in sorted(self.records)]
        self.datasets["predict"] = LesionDataset(predict, transform=self._eval_transform(), cache=eval_cache,
                                                 image_size=self.image_size,
                                                 with_mask=all(r.mask_path is not None for r in predict))

    def _train_transform(self):
        return build_transforms(self.augment, self.train_image_size, train=True)

    def _eval_transform(self):
        return build_transforms(self.augment, self.image_size, train=False)

    def _train_decode_size(self) -> tuple[int, int]:
        # Decode at the larger of the working and current training sizes: never upsample a small decode.
        h, w = self.train_image_size
        return (max(h, self.image_size[0]), max(w, self.image_size[1]))

    def set_train_image_size(self, size: int | list[int] | tuple[int, int]) -> None:
        """Train at another size from now on (progressive resizing). Rebuilds the train transform in
        place, so the existing train DataLoader sees it at the next epoch (workers are not persistent)."""
        self.train_image_size = parse_size(size)
        train = self.datasets.get("train")
        if train is not None:
            train.transform = self._train_transform()
            decode = self._train_decode_size()
            if train.image_size != decode:
                train.cache = self._cache(decode)
                train.image_size = decode

    def save_manifest(self, path: str | Path) -> Path:
        if self.manifest is None:
            raise RuntimeError("save_manifest: call setup() first")
        return self.manifest.save(path)

    # -- loaders ---------------------------------------------------------------------------------
    def _dataset(self, name: str) -> LesionDataset:
        if not self.datasets:
            raise RuntimeError(f"{name}_dataloader: call setup() first")
        ds = self.datasets[name]
        if name == "val" and len(ds) == 0 and self.manifest is not None and "val" not in self.manifest.subsets \
                and len(self.datasets["test"]) > 0:
            # Train/test schemes (70-30): the paper evaluated on its test set; Lightning needs a val loader.
            warnings.warn(f"split {self.split!r} has no val subset: validating on its test subset", UserWarning,
                          stacklevel=3)
            return self.datasets["test"]
        if len(ds) == 0:
            sizes = self.manifest.sizes() if self.manifest is not None else {}
            raise DataError(self.dataset_root or self.dataset,
                            f"split {self.split!r} of {self.dataset} has no {name!r} images (subset sizes: {sizes}); "
                            "use a larger dataset or another split")
        return ds

    def _loader(self, ds: LesionDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSeededRandomSampler(len(ds), seed=self.seed) if shuffle else None,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=shuffle and len(ds) > self.batch_size,
            persistent_workers=False,  # fresh workers each epoch pick up set_train_image_size changes
            worker_init_fn=seed_worker if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("predict"), shuffle=False)

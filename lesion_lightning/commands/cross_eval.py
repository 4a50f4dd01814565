"""`lesion-lightning cross-eval`: score a trained model on other datasets, with no retraining (LANET Table 9).

    lesion-lightning cross-eval --ckpt runs/demo/r1 --datasets isic2017,isic2018,ph2 [--exclude-overlap]
    lesion-lightning cross-eval --jobs experiments/cross_eval/lanet_table9.yaml

For each test dataset:

1. its root: `--data-roots name=DIR,...`, else the embedded sample in ../shared/data, else the
   synthetic stand-in in that layout (generated once into the cache, as `LesionDataModule` does with
   `root: null`); every labelled image of the dataset is used (`--subsets` restricts ISIC datasets
   to official subsets, e.g. `test`);
2. the images it shares with the training set are found by id and by byte-identical image files
   (`lesion_lightning.data.overlap`). The training set is the run's `split.json` ids of the seen
   subsets (`--seen`, default `train`) under the run's dataset root (`--train-root` overrides);
3. the model predicts every image with the run's preprocessing (working size and normalisation
   preset of its config, `lesion_lightning.inference`), and `SegmentationMetrics` (the training
   code) scores it, at the run's threshold. By default predictions and masks are compared at the
   **working size**, exactly as validation does (mask resized with nearest neighbour);
   `--resolution original` upsamples the probabilities to each image's own size and scores against
   the original mask instead;
4. two sets of numbers: **all** images, and **unseen** images only (shared ones left out). Both are
   always reported; `--exclude-overlap` makes unseen-only the headline.

Outputs in `--output` (default results/cross_eval/<run name>): `cross_eval.json` (everything),
`cross_eval.csv` (one row per dataset and image set), `cross_eval.md`, `per_image_<dataset>.csv`
(with a `seen` column) and, with `--save-predictions`, the binary predictions and the compared
masks as PNG (`<dataset>/pred/<id>.png`, `<dataset>/gt/<id>_segmentation.png`) so that
`lesion-lightning evaluate --pred ... --gt ...` reproduces the numbers. Exit status 0, 1 when a job
or a dataset failed, 2 for bad options.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_lightning.data.datasets import get_dataset_spec, list_datasets
from lesion_lightning.data.errors import DataError

TEST_DATASETS = list_datasets(fixed_layout=True)  # addressable by name alone (not `folder`)
# The five metrics of LANET Table 9, in its column order (pooled values, in %).
TABLE_METRICS = ("accuracy", "dice", "iou", "sensitivity", "specificity")
RESOLUTIONS = ("working", "original")
DEFAULT_OUTPUT_ROOT = Path("results") / "cross_eval"
CSV_COLUMNS = ("job", "dataset", "images", "num_images", "num_shared", "headline",
               *(f"{m}" for m in TABLE_METRICS), *(f"{m}_per_image" for m in TABLE_METRICS), "thresholded_jaccard",
               *(f"paper_{m}" for m in TABLE_METRICS), "root")


class CrossEvalError(RuntimeError):
    """A bad option or input; the message names it."""


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", default=None, metavar="RUN_OR_CKPT",
                     help="trained run folder (its best checkpoint) or a .ckpt file")
    src.add_argument("--jobs", type=Path, default=None, metavar="YAML",
                     help="batch mode: a YAML file listing jobs (see experiments/cross_eval/lanet_table9.yaml)")
    parser.add_argument("--datasets", default="isic2017,isic2018,ph2", metavar="A,B,...",
                        help=f"test datasets, of {', '.join(TEST_DATASETS)} (default isic2017,isic2018,ph2)")
    parser.add_argument("--data-roots", default="", metavar="NAME=DIR,...",
                        help="dataset roots, e.g. isic2018=/data/isic2018,ph2=/data/PH2 (default: the embedded "
                        "sample in ../shared/data, else a synthetic stand-in)")
    parser.add_argument("--subsets", default=None, metavar="S,...",
                        help="official subsets of ISIC test datasets to use (train,val,test; default: all labelled)")
    parser.add_argument("--exclude-overlap", action="store_true",
                        help="headline = unseen images only (both numbers are always reported)")
    parser.add_argument("--train-root", type=Path, default=None,
                        help="root of the training dataset (default: the run's data.root, else the embedded data)")
    parser.add_argument("--seen", default="train", metavar="S,...",
                        help="subsets of the run's split.json that count as seen in training (default train; "
                        "use train,val to also leave out the model-selection images)")
    parser.add_argument("--resolution", default="working", choices=RESOLUTIONS,
                        help="compare at the run's working size (default, as validation) or at each image's own size")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--tta", action="store_true", help="6-fold test-time augmentation (flips, rotations)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="decode cache / synthetic data folder (default $LESION_LIGHTNING_CACHE or .cache/lesion-lightning)")
    parser.add_argument("--save-predictions", action="store_true",
                        help="write the binary predictions and compared masks as PNG under the output folder")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (only for files you trust)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"output folder (default {DEFAULT_OUTPUT_ROOT}/<run name>; batch mode: "
                        f"{DEFAULT_OUTPUT_ROOT}/<jobs file name>)")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of the tables")


# ----------------------------------------------------------------------------------------------
# option parsing


def parse_datasets(text: str | list[str], option: str = "--datasets") -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    if not names:
        raise CrossEvalError(f"{option}: no dataset given")
    unknown = [n for n in names if n not in TEST_DATASETS]
    if unknown:
        raise CrossEvalError(f"{option}: unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(TEST_DATASETS)}")
    return list(dict.fromkeys(names))


def parse_data_roots(text: str | dict[str, str] | None, option: str = "--data-roots") -> dict[str, Path]:
    if not text:
        return {}
    items = text.items() if isinstance(text, dict) else []
    if isinstance(text, str):
        pairs = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "=" not in part:
                raise CrossEvalError(f"{option}: {part!r} is not NAME=DIR (e.g. ph2=/data/PH2)")
            name, _, folder = part.partition("=")
            pairs.append((name.strip(), folder.strip()))
        items = pairs
    out: dict[str, Path] = {}
    for name, folder in items:
        if name not in TEST_DATASETS:
            raise CrossEvalError(f"{option}: unknown dataset {name!r}; choose from {', '.join(TEST_DATASETS)}")
        path = Path(str(folder)).expanduser()
        if not path.is_dir():
            raise CrossEvalError(f"{option}: {name}={path}: folder not found")
        out[name] = path
    return out


def _parse_list(text: str | None, allowed: tuple[str, ...], option: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if not names or bad:
        raise CrossEvalError(f"{option}: {text!r}: use a comma-separated list of {', '.join(allowed)}")
    return names


# ----------------------------------------------------------------------------------------------
# training set and test roots


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


def _cache_dir(cache: str | None) -> Path:
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


def resolve_training_set(loaded: Any, *, train_root: Path | None, seen: list[str], cache_dir: Path) -> TrainingSet:
    """The images the model saw in training: split.json ids of the `seen` subsets under the run's root."""
    from lesion_lightning.data.readers import scan_dataset
    from lesion_lightning.data.splits import SplitManifest

    run_dir = loaded.run_dir
    split_path = run_dir / "split.json" if run_dir is not None else None
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


# ----------------------------------------------------------------------------------------------
# scoring


def _values(metric: Any) -> dict[str, float]:
    return {k: float(v) for k, v in metric.compute().items()}


def _write_png(path: Path, mask01: Any) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.asarray(mask01) > 0).astype(np.uint8) * 255).save(path)


def score_dataset(predictor: Any, records: list[Any], seen_ids: set[str], *, resolution: str, batch_size: int,
                  cache_dir: Path | None, save_dir: Path | None = None) -> dict[str, Any]:
    """Predict and score `records`: {"all": values, "unseen": values or None, "per_image": rows}."""
    import torch

    from lesion_lightning.data.cache import DecodeCache
    from lesion_lightning.data.dataset import LesionDataset
    from lesion_lightning.metrics import SegmentationMetrics

    threshold = predictor.threshold
    all_metric = SegmentationMetrics(threshold=threshold)
    unseen_metric = SegmentationMetrics(threshold=threshold)
    size = predictor.preprocessing.image_size
    if resolution == "working":
        # As validation: decode once at the working size (cache), then the evaluation transform.
        cache = DecodeCache(cache_dir / "decoded", size) if cache_dir is not None else None
        ds = LesionDataset(records, transform=predictor.preprocessing.transform(), cache=cache, image_size=size)
    else:
        ds = LesionDataset(records, transform=None, cache=None, image_size=None)
    num_unseen = 0
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        ids = [it["id"] for it in items]
        if resolution == "working":
            x = torch.stack([it["image"] for it in items])
            probs = predictor.forward_batch(x).cpu()
            masks = torch.stack([it["mask"] for it in items])
        else:
            full = predictor.predict_batch([predictor.preprocess(it["image"]) for it in items],
                                           [it["image"].shape[:2] for it in items])
            # Images differ in size: score one by one.
            probs_list = [torch.from_numpy(p)[None, None] for p in full]
            masks_list = [torch.from_numpy(it["mask"]).float()[None, None] for it in items]
            probs, masks = probs_list, masks_list
        for j, image_id in enumerate(ids):
            p = probs[j:j + 1] if resolution == "working" else probs[j]
            m = masks[j:j + 1] if resolution == "working" else masks[j]
            p = p.clamp(0, 1)
            all_metric.update(p, m, ids=[image_id])
            if image_id not in seen_ids:
                unseen_metric.update(p, m, ids=[image_id])
                num_unseen += 1
            if save_dir is not None:
                _write_png(save_dir / "pred" / f"{image_id}.png", (p[0, 0] > threshold).numpy())
                _write_png(save_dir / "gt" / f"{image_id}_segmentation.png", m[0, 0].numpy())
    rows = all_metric.per_image()
    for row in rows:
        row["seen"] = row["id"] in seen_ids
    return {"all": _values(all_metric), "unseen": _values(unseen_metric) if num_unseen else None,
            "num_images": len(records), "num_unseen": num_unseen, "per_image": rows}


def _summary(values: dict[str, float] | None, num_images: int) -> dict[str, Any] | None:
    if values is None:
        return None
    from lesion_lightning.commands.evaluate import summary

    return summary(values, num_images)


# ----------------------------------------------------------------------------------------------
# one job


def cross_evaluate(ckpt: str | Path, datasets: list[str], *, data_roots: dict[str, Path] | None = None,
                   subsets: list[str] | None = None, exclude_overlap: bool = False, train_root: Path | None = None,
                   seen: list[str] | None = None, resolution: str = "working", batch_size: int = 8,
                   device: str = "cpu", tta: bool = False, cache: str | None = None,
                   save_predictions_to: Path | None = None, trust_checkpoint: bool = False,
                   paper: dict[str, dict[str, float]] | None = None, name: str | None = None) -> dict[str, Any]:
    """Evaluate one trained model on `datasets`; returns the JSON document (see the module doc)."""
    from lesion_lightning.data.overlap import find_overlap
    from lesion_lightning.inference import CheckpointError, Predictor, load_task, pick_device

    if resolution not in RESOLUTIONS:
        raise CrossEvalError(f"--resolution: {resolution!r}; choose one of {', '.join(RESOLUTIONS)}")
    if batch_size < 1:
        raise CrossEvalError(f"--batch-size: must be at least 1, got {batch_size}")
    if device not in ("cpu", "auto") and not str(device).startswith("cuda"):
        raise CrossEvalError(f"--device: {device!r}; use cpu, cuda[:N] or auto")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CrossEvalError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    cache_dir = _cache_dir(cache)
    try:
        loaded = load_task(ckpt, trust_checkpoint=trust_checkpoint, device=pick_device(device))
    except CheckpointError as err:
        raise CrossEvalError(str(err)) from err
    predictor = Predictor(loaded, tta=tta)
    training = resolve_training_set(loaded, train_root=train_root, seen=seen or ["train"], cache_dir=cache_dir)
    data_roots = data_roots or {}
    paper = paper or {}
    headline = "unseen" if exclude_overlap else "all"
    results = []
    for dataset in datasets:
        entry: dict[str, Any] = {"dataset": dataset, "label": get_dataset_spec(dataset).label}
        try:
            if dataset in data_roots:
                root, source = data_roots[dataset], "--data-roots"
            else:
                root, source = default_root(dataset, cache_dir)
            entry.update(root=str(root), root_source=source)
            records, unlabelled = test_records(dataset, root, subsets)
            overlap = find_overlap(training.records, records)
            shared = overlap.ids_b
            save_dir = save_predictions_to / dataset if save_predictions_to is not None else None
            scored = score_dataset(predictor, records, shared, resolution=resolution, batch_size=batch_size,
                                   cache_dir=cache_dir, save_dir=save_dir)
            entry.update(
                num_images=len(records), num_unlabelled_skipped=unlabelled, num_shared=len(shared),
                num_unseen=scored["num_unseen"], overlap=overlap.to_dict(),
                all=_summary(scored["all"], len(records)),
                unseen=_summary(scored["unseen"], scored["num_unseen"]),
                per_image=scored["per_image"],
            )
            entry["headline"] = entry[headline]
            if dataset == training.dataset:
                entry["note"] = "same dataset as training: 'unseen' = images outside the seen subsets"
        except (DataError, ValueError, OSError) as err:
            entry["error"] = str(err)
        if dataset in paper:
            entry["paper"] = dict(paper[dataset])
        results.append(entry)
    run_name = loaded.run_dir.name if loaded.run_dir is not None else loaded.checkpoint_path.stem
    return {
        "name": name or run_name,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "checkpoint": str(loaded.checkpoint_path),
        "run_dir": None if loaded.run_dir is None else str(loaded.run_dir),
        "model": loaded.model_name,
        "model_kwargs": loaded.model_kwargs,
        "threshold": predictor.threshold,
        "tta": tta,
        "preprocessing": loaded.preprocessing.as_dict(),
        "resolution": resolution,
        "resolution_note": ("predictions and masks compared at the run's working size (mask resized with nearest "
                            "neighbour), as in validation" if resolution == "working" else
                            "probabilities resized (bilinear) to each image's own size, compared with the original mask"),
        "training_set": training.as_dict(),
        "exclude_overlap": exclude_overlap,
        "headline": headline,
        "results": results,
    }


# ----------------------------------------------------------------------------------------------
# outputs


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in doc["results"]:
        for images in ("all", "unseen"):
            s = r.get(images)
            row: dict[str, Any] = {"job": doc["name"], "dataset": r["dataset"], "images": images,
                                   "root": r.get("root", ""), "num_shared": r.get("num_shared", ""),
                                   "headline": images == doc["headline"]}
            if s is not None:
                row["num_images"] = s["num_images"]
                row.update({m: s["pooled"][m] for m in TABLE_METRICS})
                row.update({f"{m}_per_image": s["per_image"][m] for m in TABLE_METRICS})
                row["thresholded_jaccard"] = s["per_image"]["thresholded_jaccard"]
            else:
                row["num_images"] = 0 if "error" not in r else ""
            for m in TABLE_METRICS:
                if m in r.get("paper", {}):
                    row[f"paper_{m}"] = r["paper"][m]
            rows.append(row)
    return rows


def markdown(doc: dict[str, Any]) -> str:
    t = doc["training_set"]
    pre = doc["preprocessing"]
    lines = [
        f"## Cross-dataset evaluation: {doc['name']}",
        "",
        f"Model `{doc['model']}` from `{doc['checkpoint']}`, trained on {t['dataset']} ({t['num_seen']} seen images, "
        f"subsets {', '.join(t['seen_subsets'])}, root `{t['root']}`). Preprocessing: "
        f"{pre['image_size'][0]}x{pre['image_size'][1]}, {pre['normalisation']['formula']}; threshold "
        f"{doc['threshold']:g}{', TTA' if doc['tta'] else ''}. Scored at {doc['resolution']} resolution: "
        f"{doc['resolution_note']}.",
        "",
        f"Headline: **{doc['headline']}** images ({'shared images left out' if doc['headline'] == 'unseen' else 'every labelled image'}). "
        "Pooled metrics over all pixels of the set, in %; 'paper' rows: the paper's printed values.",
        "",
        "| test dataset | images | n | shared | " + " | ".join(TABLE_METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(TABLE_METRICS),
    ]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['label']} | error | - | - | " + " | ".join("-" for _ in TABLE_METRICS) + " |")
            continue
        order = ("unseen", "all") if doc["headline"] == "unseen" else ("all", "unseen")
        for images in order:
            s = r.get(images)
            mark = "**" if images == doc["headline"] else ""
            cells = [_pct(s["pooled"][m]) if s else "-" for m in TABLE_METRICS]
            n = s["num_images"] if s else 0
            lines.append(f"| {r['label']} | {mark}{images}{mark} | {n} | {r['num_shared']} | " + " | ".join(cells) + " |")
        if r.get("paper"):
            lines.append(f"| {r['label']} | paper | - | - | "
                         + " | ".join(f"{r['paper'][m]:.2f}" if m in r["paper"] else "-" for m in TABLE_METRICS) + " |")
    notes = [f"- {r['label']}: data from {r.get('root_source', '?')} (`{r.get('root', '?')}`)"
             + (f"; {r['num_shared']} image(s) shared with the training set" if r.get("num_shared") else "")
             + (f"; error: {r['error']}" if "error" in r else "") for r in doc["results"]]
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_outputs(folder: Path, doc: dict[str, Any]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "cross_eval.json", "csv": folder / "cross_eval.csv", "md": folder / "cross_eval.md"}
    paths["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_csv_rows(doc))
    paths["md"].write_text(markdown(doc))
    per_cols = ("id", "seen", "dice", "iou", "sensitivity", "specificity", "accuracy", "precision",
                "thresholded_jaccard", "tp", "fp", "tn", "fn")
    for r in doc["results"]:
        if r.get("per_image"):
            with (folder / f"per_image_{r['dataset']}.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=per_cols, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(r["per_image"])
    return paths


def _print_tables(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    width = Console(file=sys.stdout).width
    Console(file=sys.stdout, width=max(width, 110)).print(Markdown(markdown(doc)))


# ----------------------------------------------------------------------------------------------
# batch mode


def find_run(train_dataset: str, model: str | None, runs_root: Path) -> Path:
    """Newest run folder under `runs_root` trained on `train_dataset` (and `model`) holding a checkpoint."""
    import yaml

    candidates = []
    for split in runs_root.glob("**/split.json"):
        run = split.parent
        try:
            if json.loads(split.read_text()).get("dataset") != train_dataset:
                continue
        except (OSError, ValueError):
            continue
        if not any((run / "checkpoints").glob("*.ckpt")):
            continue
        if model is not None:
            try:
                config = yaml.safe_load((run / "config.yaml").read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue
            if ((config.get("model") or {}).get("init_args") or {}).get("model") != model:
                continue
        candidates.append(run)
    if not candidates:
        what = f"model {model!r} " if model else ""
        raise CrossEvalError(f"no trained run of {what}on {train_dataset} with a checkpoint under {runs_root}; train one "
                             "(`lesion-lightning fit --config ...`) or give the job a `run:` folder")
    return max(candidates, key=lambda p: max(c.stat().st_mtime for c in (p / "checkpoints").glob("*.ckpt")))


JOB_KEYS = {"name", "run", "ckpt", "train_dataset", "model", "runs_root", "datasets", "data_roots", "subsets",
            "exclude_overlap", "train_root", "seen", "resolution", "paper", "tta", "batch_size"}


def load_jobs(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise CrossEvalError(f"--jobs {path}: file not found")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CrossEvalError(f"--jobs {path}: invalid YAML: {err}") from err
    if not isinstance(spec, dict) or not isinstance(spec.get("jobs"), list) or not spec["jobs"]:
        raise CrossEvalError(f"--jobs {path}: expected a mapping with a non-empty `jobs:` list")
    defaults = spec.get("defaults") or {}
    for i, job in enumerate(spec["jobs"]):
        where = f"--jobs {path}: job {i + 1}"
        if not isinstance(job, dict):
            raise CrossEvalError(f"{where}: expected a mapping")
        unknown = sorted(set(job) - JOB_KEYS)
        if unknown:
            raise CrossEvalError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(JOB_KEYS))}")
        if not (job.get("run") or job.get("ckpt") or job.get("train_dataset")):
            raise CrossEvalError(f"{where}: give `run:` (a run folder or .ckpt) or `train_dataset:` (+ `model:`)")
        if "datasets" not in job and "datasets" not in defaults:
            raise CrossEvalError(f"{where}: no `datasets:` list")
        try:
            parse_datasets(job.get("datasets", defaults.get("datasets")), option=f"{where} datasets")
        except CrossEvalError:
            raise
    return spec


def run_jobs(path: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], Path]:
    spec = load_jobs(path)
    defaults = dict(spec.get("defaults") or {})
    out_root = args.output or DEFAULT_OUTPUT_ROOT / path.stem
    docs = []
    for i, job in enumerate(spec["jobs"]):
        job = {**defaults, **job}
        name = str(job.get("name") or f"job{i + 1}")
        try:
            ckpt = job.get("run") or job.get("ckpt")
            if ckpt is None:
                ckpt = find_run(job["train_dataset"], job.get("model"), Path(job.get("runs_root", "runs")))
            seen = job.get("seen", args.seen)
            doc = cross_evaluate(
                ckpt, parse_datasets(job["datasets"], option=f"job {name} datasets"),
                data_roots=parse_data_roots(job.get("data_roots") or args.data_roots, option=f"job {name} data_roots"),
                subsets=job.get("subsets") or _parse_list(args.subsets, ("train", "val", "test"), "--subsets"),
                exclude_overlap=bool(job.get("exclude_overlap", args.exclude_overlap)),
                train_root=Path(job["train_root"]) if job.get("train_root") else args.train_root,
                seen=seen.split(",") if isinstance(seen, str) else list(seen),
                resolution=job.get("resolution", args.resolution), batch_size=int(job.get("batch_size", args.batch_size)),
                device=args.device, tta=bool(job.get("tta", args.tta)), cache=args.cache,
                save_predictions_to=(out_root / name / "predictions") if args.save_predictions else None,
                trust_checkpoint=args.trust_checkpoint, paper=job.get("paper"), name=name)
            write_outputs(out_root / name, doc)
        except (CrossEvalError, DataError) as err:
            doc = {"name": name, "error": str(err), "results": []}
        docs.append(doc)
    out_root.mkdir(parents=True, exist_ok=True)
    title = spec.get("title", path.stem)
    parts = [f"# {title}", ""] + [markdown(d) if "error" not in d else f"## {d['name']}\n\nerror: {d['error']}\n"
                                  for d in docs]
    (out_root / "cross_eval.md").write_text("\n".join(parts))
    (out_root / "cross_eval.json").write_text(json.dumps({"title": title, "jobs_file": str(path), "jobs": docs},
                                                         indent=2, default=str) + "\n")
    return docs, out_root


# ----------------------------------------------------------------------------------------------
# entry point


def _default_name(ckpt: str | Path) -> str:
    from lesion_lightning.inference import CheckpointError, resolve_checkpoint

    try:
        path, run_dir = resolve_checkpoint(ckpt)
    except CheckpointError as err:
        raise CrossEvalError(str(err)) from err
    return run_dir.name if run_dir is not None else path.stem


def run(args: argparse.Namespace) -> int:
    try:
        if args.jobs is not None:
            docs, out = run_jobs(args.jobs, args)
        else:
            out = args.output or DEFAULT_OUTPUT_ROOT / _default_name(args.ckpt)
            doc = cross_evaluate(
                args.ckpt, parse_datasets(args.datasets), data_roots=parse_data_roots(args.data_roots),
                subsets=_parse_list(args.subsets, ("train", "val", "test"), "--subsets"),
                exclude_overlap=args.exclude_overlap, train_root=args.train_root,
                seen=_parse_list(args.seen, ("train", "val", "test"), "--seen"), resolution=args.resolution,
                batch_size=args.batch_size, device=args.device, tta=args.tta, cache=args.cache,
                save_predictions_to=out / "predictions" if args.save_predictions else None,
                trust_checkpoint=args.trust_checkpoint)
            write_outputs(out, doc)
            docs = [doc]
    except (CrossEvalError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(docs[0] if args.jobs is None else docs, indent=2, default=str))
    else:
        for d in docs:
            if "error" in d:
                print(f"job {d['name']}: error: {d['error']}")
            else:
                _print_tables(d)
        print(f"wrote {out}")
    failed = [d for d in docs if "error" in d or any("error" in r for r in d.get("results", []))]
    for d in docs:
        for r in d.get("results", []):
            if "error" in r:
                print(f"error: {d['name']}: {r['dataset']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0

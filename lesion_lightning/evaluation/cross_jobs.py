"""Batch cross-dataset evaluation: a YAML file of jobs (experiments/cross_eval/lanet_table9.yaml), each one
trained model scored on other datasets by `cross_evaluate`.

Each job names a trained model by `run:` (a run folder or a .ckpt file) or by `train_dataset:` + `model:`
(the newest run under `runs_root:` trained on that dataset with that model). A job's keys override the
file's `defaults:`, which override the command line's options.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lesion_lightning.data.errors import DataError
from lesion_lightning.evaluation.cross_dataset import cross_evaluate
from lesion_lightning.evaluation.cross_options import (
    DEFAULT_OUTPUT_ROOT,
    CrossEvalError,
    CrossEvalOptions,
    parse_data_roots,
    parse_datasets,
    parse_subsets,
)
from lesion_lightning.evaluation.cross_report import markdown, write_outputs


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
            "exclude_overlap", "train_root", "seen", "resolution", "paper", "tta", "batch_size", "synthetic"}


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
        parse_datasets(job.get("datasets", defaults.get("datasets")), option=f"{where} datasets")
    return spec


def job_options(job: dict[str, Any], base: CrossEvalOptions, name: str) -> CrossEvalOptions:
    """`base` with the job's own keys (datasets, data_roots, subsets, seen, ...) in place of its values."""
    where = f"job {name}"
    over: dict[str, Any] = {"datasets": parse_datasets(job["datasets"], option=f"{where} datasets")}
    if job.get("data_roots"):
        over["data_roots"] = parse_data_roots(job["data_roots"], option=f"{where} data_roots")
    if job.get("subsets"):
        over["subsets"] = parse_subsets(job["subsets"], f"{where} subsets")
    if "seen" in job:
        over["seen"] = parse_subsets(job["seen"], f"{where} seen")
    if job.get("train_root"):
        over["train_root"] = Path(job["train_root"])
    for key, cast in (("exclude_overlap", bool), ("resolution", str), ("batch_size", int), ("tta", bool),
                      ("synthetic", bool)):
        if key in job:
            over[key] = cast(job[key])
    return dataclasses.replace(base, **over)


def _run_one(job: dict[str, Any], name: str, base: CrossEvalOptions, out: Path, save_predictions: bool) -> dict[str, Any]:
    try:
        ckpt = job.get("run") or job.get("ckpt")
        if ckpt is None:
            ckpt = find_run(job["train_dataset"], job.get("model"), Path(job.get("runs_root", "runs")))
        doc = cross_evaluate(ckpt, job_options(job, base, name), paper=job.get("paper"), name=name,
                             save_predictions_to=(out / "predictions") if save_predictions else None)
        write_outputs(out, doc)
    except (CrossEvalError, DataError) as err:
        doc = {"name": name, "error": str(err), "results": []}
    return doc


def run_jobs(path: Path, base: CrossEvalOptions, output: Path | None = None, save_predictions: bool = False
             ) -> tuple[list[dict[str, Any]], Path]:
    """Run every job of a jobs file; returns the documents (a failed job: {name, error}) and the output folder."""
    spec = load_jobs(path)
    defaults = dict(spec.get("defaults") or {})
    out_root = output or DEFAULT_OUTPUT_ROOT / path.stem
    docs = []
    for i, job in enumerate(spec["jobs"]):
        job = {**defaults, **job}
        name = str(job.get("name") or f"job{i + 1}")
        docs.append(_run_one(job, name, base, out_root / name, save_predictions))
    out_root.mkdir(parents=True, exist_ok=True)
    title = spec.get("title", path.stem)
    parts = [f"# {title}", ""] + [markdown(d) if "error" not in d else f"## {d['name']}\n\nerror: {d['error']}\n"
                                  for d in docs]
    (out_root / "cross_eval.md").write_text("\n".join(parts))
    (out_root / "cross_eval.json").write_text(json.dumps({"title": title, "jobs_file": str(path), "jobs": docs},
                                                         indent=2, default=str) + "\n")
    return docs, out_root


def default_name(ckpt: str | Path) -> str:
    """The name of a run's outputs: its run folder's name, else the checkpoint file's stem."""
    from lesion_lightning.inference import CheckpointError, resolve_checkpoint

    try:
        path, run_dir = resolve_checkpoint(ckpt)
    except CheckpointError as err:
        raise CrossEvalError(str(err)) from err
    return run_dir.name if run_dir is not None else path.stem


def headline_values(entry: dict[str, Any]) -> dict[str, float]:
    """A dataset entry's headline scores as flat `SegmentationMetrics` keys (dice, dice_per_image, ...)."""
    headline = entry["headline"]
    values = dict(headline["pooled"])
    for key, value in headline["per_image"].items():
        values[key if key == "thresholded_jaccard" else f"{key}_per_image"] = value
    return values


def score_table_job(ckpt: Path, dataset: str, root: Path | None, output: Path,
                    resolution: str = "working") -> dict[str, float]:
    """A results table's cross-dataset cell (`lesion-lightning reproduce`, e.g. LANET Table 9): `cross_evaluate`
    of one trained checkpoint on one dataset, its outputs written into `output`; returns the headline scores
    with their `data_source`. No root (the smoke profile, whose tables say the data is not the paper's): the
    dataset's embedded sample, else its synthetic stand-in."""
    options = CrossEvalOptions(datasets=[dataset], data_roots={dataset: root} if root is not None else {},
                               device="auto", synthetic=root is None, resolution=resolution)
    doc = cross_evaluate(ckpt, options)
    write_outputs(output, doc)
    entry = doc["results"][0]
    if "error" in entry:
        raise CrossEvalError(f"{dataset}: {entry['error']}")
    return {**headline_values(entry), "data_source": entry["data_source"]}

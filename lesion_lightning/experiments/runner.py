"""Results store and job runner for table specs.

Every (table, row, dataset, split/fold, seed) is one job with its own run folder
`RUNS/reproduce-<table>/<row>-<dataset>-<split>-s<seed>-<hash>`; the hash covers every option that
changes the result (the CLI options and the contents of the config files), so a job whose run folder
already holds a finished result is skipped and an interrupted table resumes where it stopped.

Training jobs run `fit` then evaluate the best checkpoint in-process through `build_cli` (`test`, or
`validate` for k-fold splits, whose held-out fold is the validation set). The test jobs of a cross-dataset
table (LANET Table 9) score the trained checkpoint on each test dataset with the cross-eval engine
(`lesion_lightning.evaluation`, as `lesion-lightning cross-eval` does). Complexity jobs (LANET Table 4)
and efficiency jobs (SLSNet Table 5) only build the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from lesion_lightning.experiments.tables import TableSpec
from lesion_lightning.paths import REPO_ROOT, sample_dataset_root

BASE_CONFIG = "experiments/base.yaml"
JOB_FILE = "job.json"
STORE_VERSION = 1

# Smoke profile defaults (a few minutes on 2 CPU cores for LANET Table 5).
SMOKE_DEFAULTS = {"epochs": 1, "image_size": 64, "batch_size": 4, "seeds": 2}


class JobError(RuntimeError):
    pass


@dataclass
class Job:
    table: str
    row: str
    model: str | None
    kind: str  # train | test | complexity | efficiency
    dataset: str | None
    split: str | None
    fold: int | None
    seed: int
    profile: str
    configs: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # CLI options that define the result (hashed)
    depends_on: str | None = None  # run folder of the training job a test job evaluates
    size: int | None = None
    hash: str = ""
    run_dir: str = ""
    stage: str = "test"  # metrics.json section holding the result

    @property
    def label(self) -> str:
        parts = [self.row]
        if self.dataset:
            parts.append(self.dataset)
        if self.fold is not None:
            parts.append(f"fold{self.fold}")
        if self.size:
            parts.append(f"{self.size}px")
        parts.append(f"seed{self.seed}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def embedded_default() -> tuple[str, str]:
    """The embedded default data: (dataset, description). Real HAM10000 sample, else synthetic ISIC 2018."""
    root = sample_dataset_root("ham10000")
    if root is not None:
        return "ham10000", f"the real HAM10000 sample ({root}; a few dozen images)"
    return "isic2018", "the synthetic ISIC-2018-layout generator (no real sample found beside the checkout)"


def embedded_for(dataset: str) -> str:
    root = sample_dataset_root(dataset)
    return f"the real {dataset} sample ({root})" if root else f"the synthetic {dataset}-layout stand-in"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _resolve_config(path: str, spec: TableSpec, row_id: str) -> Path:
    p = Path(path)
    full = p if p.is_absolute() else REPO_ROOT / p
    if not full.is_file():
        raise JobError(f"{spec.path}: row {row_id!r}: preset {path} does not exist "
                       f"(expected {full}); write it, or point the row's `preset` at an existing experiment YAML")
    return full


def _preset_model(path: Path) -> str | None:
    """The registry model name an experiment YAML trains (model.init_args.model), if it names one."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
        return ((data.get("model") or {}).get("init_args") or {}).get("model")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def data_roots_for(spec: TableSpec, data_root: list[str] | None) -> dict[str, str]:
    """`--data-root DIR` (one dataset, or DIR/<dataset> per dataset) or `--data-root NAME=DIR` (repeatable)."""
    datasets = list(dict.fromkeys(spec.datasets + spec.test_datasets))
    roots: dict[str, str] = {}
    plain: list[str] = []
    for item in data_root or []:
        name, sep, value = item.partition("=")
        if sep and name in datasets:
            roots[name] = value
        else:
            plain.append(item)
    for item in plain:
        for d in datasets:
            if d in roots:
                continue
            if len(datasets) == 1:
                roots[d] = item
            elif (Path(item) / d).is_dir():
                roots[d] = str(Path(item) / d)
    missing = [d for d in datasets if d not in roots]
    if missing:
        raise JobError(f"the paper profile of {spec.id} needs the real dataset(s): no root for "
                       f"{', '.join(missing)}; pass --data-root DIR (one dataset), --data-root NAME=DIR, or use "
                       "--profile smoke for the embedded sample data")
    for d, r in roots.items():
        if not Path(r).expanduser().is_dir():
            raise JobError(f"--data-root: {d}: {r} is not a folder")
    return roots


def plan_jobs(spec: TableSpec, profile: str, runs_root: str | Path, data_root: list[str] | None = None,
              seeds: int | None = None, rows: list[str] | None = None,
              overrides: dict[str, Any] | None = None) -> list[Job]:
    """Every job of a table for one profile (validates presets and data roots; runs nothing).

    `overrides` (epochs, image_size, batch_size, limit_batches, args) win over the spec's profile."""
    over = spec.profile(profile)
    if profile == "smoke":
        over = {**SMOKE_DEFAULTS, **over}
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        over[k] = list(over.get("args") or []) + list(v) if k == "args" else v
    n_seeds = seeds or over.get("seeds") or spec.seeds
    seed_list = [42 + i for i in range(int(n_seeds))]
    split = over.get("split", spec.split)
    folds = over.get("folds", spec.folds)
    if profile == "paper":
        roots = data_roots_for(spec, data_root) if spec.kind in ("train", "cross-dataset") else {}
    else:
        roots = {}
        if split not in ("kfold",):
            split = "80-10-10"  # the embedded sample has no official subsets or enough images for 70-30
    wanted = [r for r in spec.rows if not r.paper_only and (rows is None or r.id in rows)]
    runs_root = Path(runs_root)
    experiment = f"reproduce-{spec.id}"
    jobs: list[Job] = []

    if spec.kind in ("complexity", "efficiency"):
        for row in wanted:
            sizes = [row.size] if row.size else (spec.sizes or [224])
            for size in sizes:
                job = Job(table=spec.id, row=row.id, model=row.model, kind=spec.kind, dataset=None, split=None,
                          fold=None, seed=0, profile=profile, size=int(size),
                          options=[json.dumps(row.model_kwargs or {}, sort_keys=True)])
                jobs.append(_finish(job, runs_root, experiment, {"version": STORE_VERSION}))
        return jobs

    def train_options(row, dataset: str, fold: int | None, seed: int) -> tuple[list[str], list[str]]:
        configs = [str(_resolve_config(BASE_CONFIG, spec, row.id)), str(_resolve_config(row.preset, spec, row.id))]
        opts = [f"--model.init_args.model={row.model}"]
        if row.model_kwargs is not None:
            opts.append(f"--model.init_args.model_kwargs={json.dumps(row.model_kwargs, sort_keys=True)}")
        elif _preset_model(Path(configs[-1])) != row.model:
            opts.append("--model.init_args.model_kwargs={}")  # the preset's kwargs belong to another model
        if profile == "smoke":
            data_name, _ = embedded_default()
            opts += [f"--data.dataset={data_name}", "--data.root=null", "--trainer.accelerator=cpu",
                     "--data.num_workers=0"]
        else:
            opts += [f"--data.dataset={dataset}", f"--data.root={roots[dataset]}"]
        opts.append(f"--data.split={split}")
        if split == "kfold":
            opts += [f"--data.folds={folds}", f"--data.fold={fold}"]
        opts.append(f"--seed_everything={seed}")
        if "epochs" in over:
            opts.append(f"--trainer.max_epochs={int(over['epochs'])}")
        if "image_size" in over:
            opts.append(f"--data.image_size={int(over['image_size'])}")
        if "batch_size" in over:
            opts.append(f"--data.batch_size={int(over['batch_size'])}")
        if "limit_batches" in over:
            lb = over["limit_batches"]
            opts += [f"--trainer.limit_train_batches={lb}", f"--trainer.limit_val_batches={lb}"]
        opts += [str(a) for a in over.get("args") or []]
        opts += row.args
        return configs, opts

    def digest(configs: list[str]) -> dict[str, Any]:
        return {"version": STORE_VERSION, "configs": [_file_digest(Path(c)) for c in configs]}

    fold_list: list[int | None] = list(range(int(folds))) if split == "kfold" else [None]
    if spec.kind == "train":
        for row in wanted:
            datasets = [row.dataset] if row.dataset else spec.datasets
            for dataset in datasets:
                for fold in fold_list:
                    for seed in seed_list:
                        configs, opts = train_options(row, dataset, fold, seed)
                        job = Job(table=spec.id, row=row.id, model=row.model, kind="train", dataset=dataset,
                                  split=split, fold=fold, seed=seed, profile=profile, configs=configs, options=opts,
                                  stage="val" if split == "kfold" else "test")
                        jobs.append(_finish(job, runs_root, experiment, digest(configs)))
        return jobs

    # cross-dataset: one training job per trained row and seed, then a test-only job per test dataset.
    trained = [r for r in wanted if r.model]
    tests = [r for r in spec.rows if not r.paper_only and r.dataset in spec.test_datasets and (rows is None or r.id in rows)]
    for row in trained:
        train_ds = spec.datasets[0]
        for seed in seed_list:
            configs, opts = train_options(row, train_ds, None, seed)
            tjob = _finish(Job(table=spec.id, row=row.id, model=row.model, kind="train", dataset=train_ds,
                               split=split, fold=None, seed=seed, profile=profile, configs=configs, options=opts),
                           runs_root, experiment, digest(configs))
            jobs.append(tjob)
            for test_row in tests:
                ds = test_row.dataset
                test_opts = [f"--data.dataset={ds}", "--data.root=null" if profile == "smoke" else f"--data.root={roots[ds]}"]
                job = Job(table=spec.id, row=test_row.id, model=row.model, kind="test", dataset=ds, split=split,
                          fold=None, seed=seed, profile=profile, configs=configs, options=test_opts,
                          depends_on=tjob.run_dir)
                jobs.append(_finish(job, runs_root, experiment, {**digest(configs), "trained": tjob.hash,
                                                                 "engine": "cross-eval"}))
    return jobs


def _finish(job: Job, runs_root: Path, experiment: str, extra: dict[str, Any]) -> Job:
    payload = {"kind": job.kind, "model": job.model, "row": job.row, "dataset": job.dataset, "split": job.split,
               "fold": job.fold, "seed": job.seed, "profile": job.profile, "size": job.size,
               "options": job.options, **extra}
    job.hash = _hash(payload)
    parts = [job.row]
    if job.dataset:
        parts.append(job.dataset)
    if job.split:
        parts.append(job.split if job.fold is None else f"fold{job.fold}")
    if job.size:
        parts.append(f"{job.size}px")
    parts += [f"s{job.seed}", job.hash]
    job.run_dir = str(runs_root / experiment / "-".join(parts))
    return job


# -- store ------------------------------------------------------------------------------------------
def read_result(job: Job) -> dict[str, float] | None:
    """The finished result of a job (its metrics.json section), or None when it has not finished."""
    run_dir = Path(job.run_dir)
    try:
        marker = json.loads((run_dir / JOB_FILE).read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if marker.get("status") != "done" or marker.get("hash") != job.hash:
        return None
    section = metrics.get(job.stage)
    if not isinstance(section, dict) or not section:
        return None
    return {**_complexity_metrics(run_dir), **section}


def _complexity_metrics(run_dir: Path) -> dict[str, float]:
    """params (M), GFLOPs and MACs (G) at the training image size, from the run's complexity.json."""
    try:
        c = json.loads((run_dir / "complexity.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    if isinstance(c.get("params"), (int, float)):
        out["params_m"] = c["params"] / 1e6
    sizes = c.get("sizes") or []
    if sizes and isinstance(sizes[0], dict):
        if "gflops" in sizes[0]:
            out["gflops"] = float(sizes[0]["gflops"])
        if "gmacs" in sizes[0]:
            out["macs_g"] = float(sizes[0]["gmacs"])
    return out


def is_done(job: Job) -> bool:
    return read_result(job) is not None


def _mark(job: Job, status: str, **extra: Any) -> None:
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / JOB_FILE).write_text(json.dumps({**job.as_dict(), "status": status, **extra}, indent=2, default=str))


def _best_checkpoint(run_dir: Path) -> Path:
    from lesion_lightning.inference import CheckpointError, resolve_checkpoint

    try:
        return resolve_checkpoint(run_dir)[0]
    except CheckpointError:
        raise JobError(f"{run_dir}: training left no checkpoint") from None


def _common_options(job: Job, logger: str) -> list[str]:
    run_dir = Path(job.run_dir)
    return [f"--output_root={run_dir.parent.parent}", f"--experiment={run_dir.parent.name}",
            f"--run_name={run_dir.name}", f"--logger={logger}", "--trainer.enable_progress_bar=false"]


def run_job(job: Job, logger: str = "none") -> dict[str, float]:
    """Run one job (no skipping here) and return its result section."""
    run_dir = Path(job.run_dir)
    _mark(job, "running", started=time.time())
    if job.kind in ("complexity", "efficiency"):
        result = _cost_metrics(job.model or "", job.size or 224, json.loads(job.options[0]) if job.options else {},
                               timing=job.kind == "efficiency")
        metrics_path = run_dir / "metrics.json"
        metrics_path.write_text(json.dumps({"test": result}, indent=2))
        _mark(job, "done", finished=time.time())
        return result

    from lesion_lightning.training.cli import build_cli

    configs: list[str] = []
    for c in job.configs:
        configs += ["--config", c]
    common = configs + job.options + _common_options(job, logger)
    if job.kind == "train":
        build_cli(["fit", *common])
        ckpt = _best_checkpoint(run_dir)
        build_cli(["validate" if job.stage == "val" else "test", *common, f"--ckpt_path={ckpt}"])
    else:  # a trained job's checkpoint on another dataset, no retraining: the one cross-dataset engine
        from lesion_lightning.evaluation.cross_jobs import score_table_job

        root = next((o.partition("=")[2] for o in job.options if o.startswith("--data.root=")), "null")
        result = score_table_job(_best_checkpoint(Path(job.depends_on or "")), job.dataset or "",
                                 None if root == "null" else Path(root), run_dir)
        (run_dir / "metrics.json").write_text(json.dumps({"test": result}, indent=2))
    _mark(job, "done", finished=time.time())
    result = read_result(job)
    if result is None:
        raise JobError(f"{run_dir}: the run finished without a {job.stage} section in metrics.json")
    return result


def _cost_metrics(model: str, size: int, model_kwargs: dict[str, Any], timing: bool = False) -> dict[str, float]:
    """The model cost report (`utils.complexity.measure_registered`) in a table's units: params (M), layers
    (leaf modules), memory MB, GFLOPs, MACs (G); with `timing`, CPU latency (median ms over 10 passes after 3
    warm-up ones, batch 1) and FPS."""
    from lesion_lightning.utils.complexity import LatencySettings, measure_registered

    c = measure_registered(model, (size, size), model_kwargs, LatencySettings(repeats=10, warmup=3) if timing else None)
    out = {"params_m": c.params / 1e6, "layers": float(c.layers), "memory_mb": c.memory_mb, "gflops": c.flops / 1e9,
           "macs_g": c.macs / 1e9, "params": float(c.params)}
    if c.latency is not None:
        out.update({"ms": c.latency.median_ms, "fps": c.latency.fps})
    return out


def _drop_checkpoints(run_dir: Path) -> None:
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        ckpt.unlink(missing_ok=True)


def _release(job: Job, jobs: list[Job]) -> None:
    """Delete the checkpoints no pending job needs any more (the job's own, or its training job's)."""
    owner = job.depends_on or (job.run_dir if job.kind == "train" else None)
    if owner is None:
        return
    dependents = [j for j in jobs if j.depends_on == owner]
    if all(is_done(j) for j in dependents):
        _drop_checkpoints(Path(owner))


def run_jobs(jobs: list[Job], logger: str = "none", on_event: Callable[[str, Job, Any], None] | None = None,
             keep_checkpoints: bool = True) -> dict[str, int]:
    """Run the unfinished jobs in order; returns counts {ran, skipped, failed}.

    `keep_checkpoints=False` deletes each run's checkpoints once no pending job needs them (the results
    stay in metrics.json; the smoke profile's default, since a table's big baselines take GBs)."""
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    for job in jobs:
        if is_done(job):
            counts["skipped"] += 1
            if on_event:
                on_event("skipped", job, None)
            continue
        if job.depends_on and not any(j.run_dir == job.depends_on and is_done(j) for j in jobs):
            counts["failed"] += 1
            if on_event:
                on_event("failed", job, JobError(f"its training job {job.depends_on} did not finish"))
            continue
        if on_event:
            on_event("start", job, None)
        try:
            run_job(job, logger=logger)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - one failed job must not stop the table
            counts["failed"] += 1
            _mark(job, "failed", error=f"{type(err).__name__}: {err}")
            if on_event:
                on_event("failed", job, err)
            continue
        counts["ran"] += 1
        if not keep_checkpoints:
            _release(job, jobs)
        if on_event:
            on_event("done", job, None)
    return counts

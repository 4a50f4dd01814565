"""Plan a table's jobs: every (table, row, dataset, split/fold, seed) is one job with its own run folder.

`RUNS/reproduce-<table>/<row>-<dataset>-<split>-s<seed>-<hash>`: the hash covers every option that
changes the result (the CLI options, the contents of the config files, the table's protocol and
scoring), so a job whose run folder already holds a finished result is skipped and an interrupted
table resumes where it stopped. Planning validates presets and data roots and runs nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lesion_lightning.tables.spec import Row, TableSpec
from lesion_lightning.paths import REPO_ROOT, sample_dataset_root

BASE_CONFIG = "experiments/base.yaml"
STORE_VERSION = 2  # 2: the protocol and scoring are part of a job's hash

# Smoke profile defaults (a few minutes on 2 CPU cores for LANET Table 5).
SMOKE_DEFAULTS = {"epochs": 1, "image_size": 64, "batch_size": 4, "seeds": 2}


class JobError(RuntimeError):
    pass


@dataclass
class Job:
    table: str
    row: str
    model: str | None
    kind: str  # train | ensemble | test | complexity | efficiency
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
    stage: str = "test"  # metrics.json section holding the result (test, or val: k-fold, protocol scored_on val)
    checkpoint: str = "best-val-dice"  # which trained network is scored (scoring.Protocol.checkpoint)
    resolution: str = "network"  # network | original (scoring.Scoring.resolution)
    tta: bool = False  # score with 6-fold test-time augmentation (the row's `tta`)
    members: list[str] = field(default_factory=list)  # run folders of an ensemble job's members
    cost_size: int | None = None  # count params/GFLOPs/MACs at this input size (the table's cost_size)

    @property
    def needs(self) -> list[str]:
        """Run folders whose checkpoints this job scores."""
        return ([self.depends_on] if self.depends_on else []) + list(self.members)

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

    @property
    def result_section(self) -> str:
        """The metrics.json section of the job's result: `<stage>`, or `<stage>_original_size`."""
        return self.stage + ("_original_size" if self.resolution == "original" else "")

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


@dataclass
class _Plan:
    """What every training job of one table and profile shares."""

    spec: TableSpec
    profile: str
    over: dict[str, Any]
    split: str | None
    folds: int | None
    roots: dict[str, str]
    runs_root: Path
    overrides: dict[str, Any] | None = None

    @property
    def experiment(self) -> str:
        return f"reproduce-{self.spec.id}"

    @property
    def scoring_payload(self) -> dict[str, Any]:
        scoring = self.spec.scoring.as_dict() if self.spec.scoring else None
        return {"scoring": scoring, "protocol": self.spec.protocol.as_dict(), "cost_size": self.spec.cost_size}


def _profile_overrides(spec: TableSpec, profile: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    over = spec.profile(profile)
    if profile == "smoke":
        over = {**SMOKE_DEFAULTS, **over}
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        over[k] = list(over.get("args") or []) + list(v) if k == "args" else v
    return over


def plan_jobs(spec: TableSpec, profile: str, runs_root: str | Path, data_root: list[str] | None = None,
              seeds: int | None = None, rows: list[str] | None = None,
              overrides: dict[str, Any] | None = None) -> list[Job]:
    """Every job of a table for one profile (validates presets and data roots; runs nothing).

    `overrides` (epochs, image_size, batch_size, limit_batches, args) win over the spec's profile."""
    over = _profile_overrides(spec, profile, overrides)
    seed_list = [42 + i for i in range(int(seeds or over.get("seeds") or spec.seeds))]
    split, folds = over.get("split", spec.split), over.get("folds", spec.folds)
    roots: dict[str, str] = {}
    if profile == "paper":
        roots = data_roots_for(spec, data_root) if spec.kind in ("train", "cross-dataset") else {}
    elif split != "kfold":
        split = "80-10-10"  # the embedded sample has no official subsets or enough images for 70-30
    wanted = [r for r in spec.rows if not r.paper_only and (rows is None or r.id in rows)]
    plan = _Plan(spec, profile, over, split, folds, roots, Path(runs_root))
    if spec.kind in ("complexity", "efficiency"):
        return _cost_jobs(plan, wanted)
    if spec.kind == "train":
        jobs: list[Job] = []
        for row in wanted:
            jobs += _train_jobs(plan, row, seed_list, jobs)
        return jobs
    tests = [r for r in spec.rows if not r.paper_only and r.dataset in spec.test_datasets and (rows is None or r.id in rows)]
    return _cross_jobs(plan, [r for r in wanted if r.model], tests, seed_list)


def _cost_jobs(plan: _Plan, wanted: list[Row]) -> list[Job]:
    jobs = []
    for row in wanted:
        for size in [row.size] if row.size else (plan.spec.sizes or [224]):
            job = Job(table=plan.spec.id, row=row.id, model=row.model, kind=plan.spec.kind, dataset=None, split=None,
                      fold=None, seed=0, profile=plan.profile, size=int(size),
                      options=[json.dumps(row.model_kwargs or {}, sort_keys=True)])
            jobs.append(_finish(job, plan, {"version": STORE_VERSION}))
    return jobs


def _train_options(plan: _Plan, row: Row, dataset: str, fold: int | None, seed: int) -> tuple[list[str], list[str]]:
    spec = plan.spec
    configs = [str(_resolve_config(BASE_CONFIG, spec, row.id)), str(_resolve_config(row.preset or "", spec, row.id))]
    opts = []
    if row.model:
        opts.append(f"--model.init_args.model={row.model}")
        if row.model_kwargs is not None:
            opts.append(f"--model.init_args.model_kwargs={json.dumps(row.model_kwargs, sort_keys=True)}")
        elif _preset_model(Path(configs[-1])) != row.model:
            opts.append("--model.init_args.model_kwargs={}")  # the preset's kwargs belong to another model
    if spec.scoring is not None:
        opts.append(f"--model.init_args.threshold={spec.scoring.threshold:g}")
    return configs, opts + _data_options(plan, dataset, fold, seed) + row.args


def _data_options(plan: _Plan, dataset: str, fold: int | None, seed: int) -> list[str]:
    over, opts = plan.over, []
    if plan.profile == "smoke":
        data_name, _ = embedded_default()
        opts += [f"--data.dataset={data_name}", "--data.root=null", "--trainer.accelerator=cpu", "--data.num_workers=0"]
    else:
        opts += [f"--data.dataset={dataset}", f"--data.root={plan.roots[dataset]}"]
    opts.append(f"--data.split={plan.split}")
    if plan.split == "kfold":
        opts += [f"--data.folds={plan.folds}", f"--data.fold={fold}"]
    opts.append(f"--seed_everything={seed}")
    for key, option in (("epochs", "trainer.max_epochs"), ("image_size", "data.image_size"),
                        ("batch_size", "data.batch_size")):
        if key in over:
            opts.append(f"--{option}={int(over[key])}")
    if "limit_batches" in over:
        lb = over["limit_batches"]
        opts += [f"--trainer.limit_train_batches={lb}", f"--trainer.limit_val_batches={lb}"]
    return opts + [str(a) for a in over.get("args") or []]


def _digest(plan: _Plan, configs: list[str]) -> dict[str, Any]:
    return {"version": STORE_VERSION, "configs": [_file_digest(Path(c)) for c in configs], **plan.scoring_payload}


def _train_job(plan: _Plan, row: Row, dataset: str, fold: int | None, seed: int) -> Job:
    configs, opts = _train_options(plan, row, dataset, fold, seed)
    scored_on_val = plan.split == "kfold" or plan.spec.protocol.scored_on == "val"
    resolution = plan.spec.scoring.resolution if plan.spec.scoring else "network"
    job = Job(table=plan.spec.id, row=row.id, model=row.model, kind="train", dataset=dataset, split=plan.split,
              fold=fold, seed=seed, profile=plan.profile, configs=configs, options=opts,
              stage="val" if scored_on_val else "test", checkpoint=plan.spec.protocol.checkpoint,
              resolution=resolution if plan.spec.kind == "train" else "network", tta=row.tta,
              cost_size=plan.spec.cost_size)
    return _finish(job, plan, {**_digest(plan, configs), "tta": row.tta})


def _train_jobs(plan: _Plan, row: Row, seed_list: list[int], planned: list[Job]) -> list[Job]:
    """A trained row's jobs, or an ensemble row's: one per (dataset, fold, seed) scoring the members'
    jobs of that (dataset, fold, seed) from `planned` as one model (the row's ensemble preset)."""
    fold_list: list[int | None] = list(range(int(plan.folds))) if plan.split == "kfold" else [None]
    jobs = []
    for dataset in [row.dataset] if row.dataset else plan.spec.datasets:
        for fold in fold_list:
            for seed in seed_list:
                job = _train_job(plan, row, dataset, fold, seed)
                if row.members:
                    job.kind, job.cost_size = "ensemble", None
                    job.members = [_member(plan, planned, m, job).run_dir for m in row.members]
                    _finish(job, plan, {**_digest(plan, job.configs), "tta": row.tta, "members": job.members})
                jobs.append(job)
    return jobs


def _member(plan: _Plan, planned: list[Job], row_id: str, job: Job) -> Job:
    for other in planned:
        if (other.row, other.dataset, other.fold, other.seed) == (row_id, job.dataset, job.fold, job.seed):
            return other
    raise JobError(f"{plan.spec.path}: row {job.row!r}: member {row_id!r} has no training job here "
                   "(list the member rows before the ensemble row, and do not leave them out with --rows)")


def _cross_jobs(plan: _Plan, trained: list[Row], tests: list[Row], seed_list: list[int]) -> list[Job]:
    """One training job per trained row and seed, then a test-only job per test dataset."""
    jobs = []
    for row in trained:
        for seed in seed_list:
            tjob = _train_job(plan, row, plan.spec.datasets[0], None, seed)
            jobs.append(tjob)
            for test_row in tests:
                ds = test_row.dataset or ""
                root = "--data.root=null" if plan.profile == "smoke" else f"--data.root={plan.roots[ds]}"
                job = Job(table=plan.spec.id, row=test_row.id, model=row.model, kind="test", dataset=ds,
                          split=plan.split, fold=None, seed=seed, profile=plan.profile, configs=tjob.configs,
                          options=[f"--data.dataset={ds}", root], depends_on=tjob.run_dir,
                          checkpoint=tjob.checkpoint,
                          resolution=plan.spec.scoring.resolution if plan.spec.scoring else "network")
                jobs.append(_finish(job, plan, {**_digest(plan, tjob.configs), "trained": tjob.hash,
                                                "engine": "cross-eval"}))
    return jobs


def _finish(job: Job, plan: _Plan, extra: dict[str, Any]) -> Job:
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
    job.run_dir = str(plan.runs_root / plan.experiment / "-".join(parts))
    return job

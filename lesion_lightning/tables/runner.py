"""Results store and job runner for table specs (jobs planned by `tables.plan`).

Training jobs run `fit`, then score the network the table's protocol names (`protocol.checkpoint`: the
best-validation-Dice checkpoint, the final-epoch network, or the lowest-validation-loss checkpoint) in-process
through `build_cli`: `test`, or `validate` for k-fold splits (whose held-out fold is the validation set) and
for tables scored on the validation subset. A table scored at the original image size then scores the same
subset again with `evaluation.original_size`. The test jobs of a cross-dataset table (LANET Table 9) score the
trained checkpoint on each test dataset with the cross-eval engine (`lesion_lightning.evaluation`, as
`lesion-lightning cross-eval` does). Complexity jobs (LANET Table 4) and efficiency jobs (SLSNet Table 5)
only build the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from lesion_lightning.tables.parallel import JobBusy, claim, run_parallel
from lesion_lightning.tables.plan import (  # noqa: F401 - the runner's public names
    Job,
    JobError,
    embedded_default,
    embedded_for,
    plan_jobs,
)
from lesion_lightning.training.run_folder import write_json

JOB_FILE = "job.json"
# The checkpoint files each protocol.checkpoint choice scores, and the extra callback that writes them.
CHECKPOINT_FILES = {"best-val-dice": "best*.ckpt", "final-epoch": "last.ckpt", "lowest-val-loss": "lowest-val-loss*.ckpt"}
LOWEST_VAL_LOSS_CALLBACK = json.dumps({
    "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
    "init_args": {"monitor": "val/loss", "mode": "min", "filename": "lowest-val-loss-{epoch:03d}",
                  "auto_insert_metric_name": False}})


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
    section = metrics.get(job.result_section)
    if not isinstance(section, dict) or not section:
        return None
    return {**_complexity_metrics(run_dir), **(metrics.get("cost") or {}), **section}


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
    write_json(Path(job.run_dir) / JOB_FILE, {**job.as_dict(), "status": status, **extra})


def scored_checkpoint(run_dir: Path, choice: str = "best-val-dice") -> Path:
    """The checkpoint file of a finished training run that the protocol's `checkpoint` choice scores."""
    files = sorted((run_dir / "checkpoints").glob(CHECKPOINT_FILES[choice]), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        raise JobError(f"{run_dir}: training left no {CHECKPOINT_FILES[choice]} checkpoint (protocol checkpoint: {choice})")
    return files[-1]


def _common_options(job: Job, logger: str) -> list[str]:
    run_dir = Path(job.run_dir)
    return [f"--output_root={run_dir.parent.parent}", f"--experiment={run_dir.parent.name}",
            f"--run_name={run_dir.name}", f"--logger={logger}", "--trainer.enable_progress_bar=false"]


def _train_and_score(job: Job, logger: str) -> None:
    from lesion_lightning.training.cli import build_cli

    configs = [arg for c in job.configs for arg in ("--config", c)]
    common = configs + job.options + _common_options(job, logger)
    extra = [f"--trainer.callbacks+={LOWEST_VAL_LOSS_CALLBACK}"] if job.checkpoint == "lowest-val-loss" else []
    build_cli(["fit", *common, *extra])
    ckpt = scored_checkpoint(Path(job.run_dir), job.checkpoint)
    build_cli(["validate" if job.stage == "val" else "test", *common, *extra, f"--ckpt_path={ckpt}",
               *_scoring_options(job)])
    if job.cost_size:
        _write_cost(Path(job.run_dir), job.cost_size)


def _write_cost(run_dir: Path, size: int) -> None:
    """metrics.json `cost`: the trained model's params/GFLOPs/MACs at the table's `cost_size` (its config's model)."""
    import yaml

    init_args = ((yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("model") or {}).get("init_args") or {}
    cost = _cost_metrics(str(init_args.get("model")), size, dict(init_args.get("model_kwargs") or {}))
    path = run_dir / "metrics.json"
    write_json(path, {**json.loads(path.read_text()), "cost": {**cost, "size": size}})


def _scoring_options(job: Job) -> list[str]:
    return [f"--score_resolution={job.resolution}"] + (["--tta=true"] if job.tta else [])


def _score_ensemble(job: Job, logger: str) -> None:
    """The members' scored checkpoints as one model (the row's ensemble preset, weighted on validation Dice)."""
    from lesion_lightning.training.cli import build_cli

    ckpts = [str(scored_checkpoint(Path(member), job.checkpoint)) for member in job.members]
    configs = [arg for c in job.configs for arg in ("--config", c)]
    build_cli(["validate" if job.stage == "val" else "test", *configs, *job.options, *_common_options(job, logger),
               f"--model.init_args.members={json.dumps(ckpts)}", *_scoring_options(job)])


def _score_elsewhere(job: Job) -> None:
    """A trained job's checkpoint on another dataset, no retraining: the one cross-dataset engine."""
    from lesion_lightning.evaluation.cross_jobs import score_table_job

    run_dir = Path(job.run_dir)
    root = next((o.partition("=")[2] for o in job.options if o.startswith("--data.root=")), "null")
    result = score_table_job(scored_checkpoint(Path(job.depends_on or ""), job.checkpoint), job.dataset or "",
                             None if root == "null" else Path(root), run_dir,
                             resolution="original" if job.resolution == "original" else "working")
    write_json(run_dir / "metrics.json", {job.result_section: result})


def run_job(job: Job, logger: str = "none", table: dict[str, Any] | None = None) -> dict[str, float]:
    """Run one job (no skipping here) and return its result section. `table`: the table's protocol and
    scoring, recorded in the run's metrics.json beside the result."""
    run_dir = Path(job.run_dir)
    _mark(job, "running", started=time.time())
    if job.kind in ("complexity", "efficiency"):
        result = _cost_metrics(job.model or "", job.size or 224, json.loads(job.options[0]) if job.options else {},
                               timing=job.kind == "efficiency")
        write_json(run_dir / "metrics.json", {"test": result})
    elif job.kind == "train":
        _train_and_score(job, logger)
    elif job.kind == "ensemble":
        _score_ensemble(job, logger)
    else:
        _score_elsewhere(job)
    if table:
        path = run_dir / "metrics.json"
        write_json(path, {**json.loads(path.read_text()), "table": table})
    _mark(job, "done", finished=time.time())
    result = read_result(job)
    if result is None:
        raise JobError(f"{run_dir}: the run finished without a {job.result_section} section in metrics.json")
    return result


def run_claimed(job: Job, logger: str = "none", table: dict[str, Any] | None = None) -> None:
    """Run a job holding its lock (`parallel.claim`: JobBusy if another process runs it), unless another
    process finished it meanwhile; a failure is recorded in job.json, then raised."""
    with claim(job.run_dir):
        if is_done(job):
            return
        try:
            run_job(job, logger=logger, table=table)
        except (Exception, SystemExit) as err:
            _mark(job, "failed", error=f"{type(err).__name__}: {err}")
            raise


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
    """Delete the checkpoints no pending job needs any more (the job's own, or those of the jobs it scored)."""
    for owner in job.needs or ([job.run_dir] if job.kind == "train" else []):
        if all(is_done(j) for j in jobs if owner in j.needs):
            _drop_checkpoints(Path(owner))


def run_jobs(jobs: list[Job], logger: str = "none", on_event: Callable[[str, Job, Any], None] | None = None,
             keep_checkpoints: bool = True, table: dict[str, Any] | None = None, workers: int = 1) -> dict[str, int]:
    """Run the unfinished jobs in order; returns counts {ran, skipped, failed} (skipped: finished before, or
    being run by another process). `workers` > 1 runs them in that many processes (`parallel.run_parallel`).

    `keep_checkpoints=False` deletes each run's checkpoints once no pending job needs them (the results
    stay in metrics.json; the smoke profile's default, since a table's big baselines take GBs)."""
    counts = {"ran": 0, "skipped": 0, "failed": 0}

    def finish(job: Job, status: str, err: Any) -> None:  # status: start, done, busy or failed
        if status == "done":
            counts["ran"] += 1
            if not keep_checkpoints:
                _release(job, jobs)
        elif status != "start":
            counts["skipped" if status == "busy" else "failed"] += 1
        if on_event:
            on_event(status, job, err)

    def blocked(job: Job) -> str | None:
        """The first training job `job` needs that did not finish, if any."""
        return next((need for need in job.needs if not any(j.run_dir == need and is_done(j) for j in jobs)), None)

    todo = []
    for job in jobs:
        if is_done(job):
            counts["skipped"] += 1
            if on_event:
                on_event("skipped", job, None)
        else:
            todo.append(job)
    if workers > 1:
        run_parallel(todo, workers, logger, table, finish, blocked, run_claimed)
        return counts
    for job in todo:
        if blocked(job):
            finish(job, "failed", JobError(f"its training job {blocked(job)} did not finish"))
            continue
        finish(job, "start", None)
        try:
            run_claimed(job, logger=logger, table=table)
        except JobBusy as err:
            finish(job, "busy", err)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - one failed job must not stop the table
            finish(job, "failed", err)
        else:
            finish(job, "done", None)
    return counts

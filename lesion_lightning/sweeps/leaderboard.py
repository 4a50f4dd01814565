"""A local sweep's trials and result, and its leaderboard: trials ranked by the metric, as CSV, Markdown, a PNG
plot and sweep.json."""

from __future__ import annotations

import csv
import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Trial:
    """One trial of a local sweep, as recorded in sweep.json and the leaderboard."""

    number: int
    run_id: str
    params: dict[str, Any]
    command: list[str]
    state: str = "pending"  # finished | failed
    exit_code: int | None = None
    metric: float | None = None
    error: str | None = None
    seconds: float = 0.0
    log_path: str = ""
    run_file: str | None = None  # the offline .wandb file the metric was read from
    run_dir: str | None = None  # the lesion-lightning run folder, when the trial is a LightningCLI run
    summary: dict[str, Any] = field(default_factory=dict)
    agent: str = ""  # host:pid of the `sweep local` agent that ran it

    @property
    def name(self) -> str:
        return f"trial-{self.number:03d}"


@dataclass
class LocalSweepResult:
    sweep_id: str
    output: Path
    config: dict[str, Any]
    trials: list[Trial]
    stopped_reason: str  # "count" | "exhausted" | "interrupted"

    @property
    def metric_name(self) -> str:
        return self.config["metric"]["name"]

    @property
    def goal(self) -> str:
        return self.config["metric"].get("goal", "minimize")

    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.state == "finished" and t.metric is not None]
        if not done:
            return None
        return (max if self.goal == "maximize" else min)(done, key=lambda t: t.metric)


def searched_parameters(config: dict[str, Any]) -> list[str]:
    """The parameters the sweep varies (not the fixed `value:` ones)."""
    return [k for k, v in (config.get("parameters") or {}).items() if not (isinstance(v, dict) and "value" in v)]


def ranked(result: LocalSweepResult) -> list[Trial]:
    """Finished trials best first, then failed ones in trial order."""
    sign = -1.0 if result.goal == "maximize" else 1.0
    done = sorted((t for t in result.trials if t.state == "finished"), key=lambda t: (sign * t.metric, t.number))
    return done + [t for t in result.trials if t.state != "finished"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def leaderboard_rows(result: LocalSweepResult) -> tuple[list[str], list[dict[str, Any]]]:
    param_names = sorted({k for t in result.trials for k in t.params})
    header = ["rank", "trial", "run_id", "state", result.metric_name, "exit_code", "seconds", *param_names,
              "error", "run_dir", "log"]
    rows = []
    rank = 0
    for t in ranked(result):
        rank_value: Any = ""
        if t.state == "finished":
            rank += 1
            rank_value = rank
        row = {"rank": rank_value, "trial": t.number, "run_id": t.run_id, "state": t.state,
               result.metric_name: t.metric, "exit_code": t.exit_code, "seconds": t.seconds,
               "error": t.error or "", "run_dir": t.run_dir or "", "log": t.log_path}
        row.update({p: t.params.get(p) for p in param_names})
        rows.append(row)
    return header, rows


def write_leaderboard(result: LocalSweepResult) -> dict[str, Path]:
    """Write leaderboard.csv, leaderboard.md, leaderboard.png and sweep.json into the output folder."""
    out = result.output
    out.mkdir(parents=True, exist_ok=True)
    header, rows = leaderboard_rows(result)
    paths = {"csv": out / "leaderboard.csv", "md": out / "leaderboard.md", "png": out / "leaderboard.png",
             "json": out / "sweep.json"}
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k] if not isinstance(row[k], (dict, list))
                                 else json.dumps(row[k], sort_keys=True)) for k in header})

    best = result.best()
    fixed = {k for t in result.trials for k in t.params} - set(searched_parameters(result.config))
    md_cols = [c for c in header if c not in ("run_dir", "log") and c not in fixed]  # the CSV has them all
    lines = [
        f"# Sweep {result.config.get('name') or result.sweep_id} ({result.sweep_id})",
        "",
        f"method `{result.config.get('method')}`, metric `{result.metric_name}` ({result.goal}); "
        f"{len(result.trials)} trial(s), {sum(t.state == 'finished' for t in result.trials)} finished, "
        f"{sum(t.state == 'failed' for t in result.trials)} failed; stopped: {result.stopped_reason}.",
        "",
    ]
    if best is not None:
        lines += [f"Best: trial {best.number} ({best.run_id}), {result.metric_name} = {best.metric:.6g}", ""]
    lines.append("| " + " | ".join(md_cols) + " |")
    lines.append("|" + "|".join("---:" if c in ("rank", "trial", result.metric_name, "exit_code", "seconds")
                                else "---" for c in md_cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in md_cols) + " |")
    lines.append("")
    paths["md"].write_text("\n".join(lines))

    _plot(result, paths["png"])
    paths["json"].write_text(json.dumps({
        "sweep_id": result.sweep_id,
        "written": _dt.datetime.now().isoformat(timespec="seconds"),
        "stopped": result.stopped_reason,
        "metric": result.config["metric"],
        "best_trial": best.number if best else None,
        "config": result.config,
        "trials": [asdict(t) for t in result.trials],
    }, indent=2, default=str))
    return paths


def _plot(result: LocalSweepResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    done = [t for t in result.trials if t.state == "finished"]
    failed = [t for t in result.trials if t.state != "finished"]
    if done:
        ax.plot([t.number for t in done], [t.metric for t in done], "o", color="tab:blue", label="finished")
        better = max if result.goal == "maximize" else min
        best_so_far, xs, ys = None, [], []
        for t in result.trials:
            if t.state == "finished":
                best_so_far = t.metric if best_so_far is None else better(best_so_far, t.metric)
            if best_so_far is not None:
                xs.append(t.number)
                ys.append(best_so_far)
        ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    if failed:
        floor = min((t.metric for t in done), default=0.0)
        ax.plot([t.number for t in failed], [floor] * len(failed), "x", color="tab:red", label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel(result.metric_name)
    ax.set_title(f"{result.config.get('name') or result.sweep_id}: {result.config.get('method')} ({result.goal})")
    if result.trials:
        ax.set_xticks([t.number for t in result.trials])
    ax.grid(alpha=0.3)
    if done or failed:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""The offline sweep loop behind `lesion-lightning sweep local`: W&B's sweep engine, no W&B server.

For each trial: `sweeps.next_run(config, runs)` proposes the values (grid / random / bayes, exactly the
engine the W&B server runs), the trial's command is built with wandb's own macro expansion
(`spec.expand_command`), the agent's files are written (`WANDB_SWEEP_PARAM_PATH` yaml, the
`${args_json_file}` JSON), and the command runs as a subprocess in W&B offline mode with the
agent's environment (`WANDB_RUN_ID`, `WANDB_SWEEP_ID`, `WANDB_SWEEP_PARAM_PATH`). Its metric is read
back from the offline run file (`utils.wandb_offline`), and the finished (or failed) run goes back to
the engine as a `SweepRun` for the next proposal. After every trial the leaderboard (CSV, Markdown,
PNG plot) and `sweep.json` are rewritten, so an interrupted sweep keeps what it did.

Trials run one after another; `early_terminate` (hyperband) is a server-side decision in W&B and is
not applied here (each trial runs to its end).
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from lesion_lightning.sweeps.leaderboard import LocalSweepResult, Trial, write_leaderboard
from lesion_lightning.sweeps.shared import locked
from lesion_lightning.sweeps.spec import (
    DEFAULT_PROJECT,
    SweepConfigError,
    expand_command,
    import_sweeps,
    trial_environment,
    write_agent_files,
)

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: Any) -> Any:
    """numpy scalars (the engine proposes np.float64) -> Python values, for JSON and the command."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_lightning_command(argv: list[str]) -> bool:
    """True when the trial runs our LightningCLI (`... lesion_lightning fit ...` / `lesion-lightning fit`)."""
    for i, tok in enumerate(argv):
        if ("lesion_lightning" in tok or "lesion-lightning" in tok) and any(
            a in LIGHTNING_SUBCOMMANDS for a in argv[i + 1:i + 3]
        ):
            return True
    return False


def _new_id(length: int = 8) -> str:
    from wandb.sdk.lib.runid import generate_id

    return generate_id(length)


def _find_run_file(roots: list[Path], run_id: str) -> Path | None:
    for root in roots:
        if root.is_dir():
            hits = sorted(root.rglob(f"offline-run-*/run-{run_id}.wandb"))
            hits = [h for h in hits if "latest-run" not in h.parts]
            if hits:
                return hits[-1]
    return None


def _read_metric(trial: Trial, roots: list[Path], metric: str) -> tuple[float | None, list[dict[str, Any]]]:
    """Fill the trial's run file / summary from its offline run; return (metric, metric history)."""
    from lesion_lightning.utils.wandb_offline import read_run

    path = _find_run_file(roots, trial.run_id)
    if path is None:
        trial.error = trial.error or f"no offline W&B run run-{trial.run_id}.wandb was written"
        return None, []
    trial.run_file = str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = read_run(path)
    trial.summary = {k: v for k, v in run.summary.items() if not k.startswith("_") and _is_number(v)}
    value = run.summary.get(metric)
    history = [{metric: v} for v in run.history_of(metric) if _is_number(v)]
    if not _is_number(value):
        trial.error = trial.error or f"the run's summary has no numeric {metric!r}"
        return None, history
    return float(value), history


class LocalSweep:
    """Run a sweep configuration's trials offline. `on_trial(event, trial)` is called with
    "start" and "end" for progress reporting."""

    def __init__(self, config: dict[str, Any], output: str | Path, *, count: int,
                 cwd: str | Path | None = None, extra_args: list[str] | None = None,
                 run_folder_args: bool | None = None, trial_timeout: float | None = None,
                 seed: int | None = None, sweep_id: str | None = None, name: str | None = None,
                 env: dict[str, str] | None = None,
                 on_trial: Callable[[str, Trial], None] | None = None) -> None:
        if count < 1:
            raise ValueError(f"--count must be at least 1, got {count}")
        metric = (config.get("metric") or {}).get("name")
        if not metric:
            raise SweepConfigError("the local sweep loop needs `metric: {name: ..., goal: ...}` to rank the trials")
        self.config = config
        self.output = Path(output)
        self.count = count
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self.extra_args = list(extra_args or [])
        self.run_folder_args = run_folder_args
        self.trial_timeout = trial_timeout
        self.seed = seed
        self.sweep_id = sweep_id or f"local-{_new_id(8)}"
        self.name = name or config.get("name") or "sweep"
        self.env = env
        self.on_trial = on_trial or (lambda event, trial: None)
        self.trials: list[Trial] = []
        self._runs: list[Any] = []  # sweeps.SweepRun, one per trial, in order
        self._mine: dict[int, Any] = {}  # this agent's trial numbers -> their proposals (SweepRun)
        self._param_paths: dict[int, Path] = {}  # this agent's trial numbers -> WANDB_SWEEP_PARAM_PATH

    # -- one trial --------------------------------------------------------------------------------
    def _propose(self) -> Any:
        sweeps = import_sweeps()
        if self.seed is not None:  # reproducible proposals: the engine draws from numpy/random globals
            import numpy as np

            random.seed(self.seed + len(self._runs))
            np.random.seed(self.seed + len(self._runs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's GP convergence chatter in bayes
            return sweeps.next_run(self.config, self._runs, validate=True)

    def _claim(self, number: int, proposal: Any) -> Trial:
        """Trial `number` for the proposal: its folder, agent files and command, recorded as running."""
        params = {k: _plain(v["value"]) for k, v in proposal.config.items()}
        run_id = _new_id(8)
        trial_dir = self.output / "trials" / f"trial-{number:03d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        param_path, json_path = write_agent_files(trial_dir, self.sweep_id, run_id, params)
        self._param_paths[number] = param_path
        argv = expand_command(self.config.get("command"), params, program=self.config.get("program"),
                              args_json_file=json_path.resolve())
        trial = Trial(number=number, run_id=run_id, params=params, command=argv,
                      log_path=str(trial_dir / "output.log"))
        use_run_args = _is_lightning_command(argv) if self.run_folder_args is None else self.run_folder_args
        if use_run_args:
            runs_root = (self.output / "runs").resolve()
            argv += [f"--output_root={runs_root}", f"--experiment={self.name}", f"--run_name={trial.name}"]
            trial.run_dir = str(runs_root / self.name / trial.name)
        argv += self.extra_args
        trial.command = argv
        trial.state = "running"
        trial.agent = f"{socket.gethostname()}:{os.getpid()}"
        self.trials.append(trial)
        self._mine[number] = proposal
        return trial

    def _run_trial(self, trial: Trial, proposal: Any) -> Trial:
        sweeps = import_sweeps()
        trial_dir = Path(trial.log_path).parent
        argv, run_id = trial.command, trial.run_id
        env = trial_environment(self.env, wandb_dir=trial_dir.resolve(), run_id=run_id, sweep_id=self.sweep_id,
                                param_path=self._param_paths[trial.number].resolve(), project=self.config.get("project") or DEFAULT_PROJECT)
        self.on_trial("start", trial)
        run_error: str | None = None  # why the process could not start or was stopped
        start = time.monotonic()
        with open(trial.log_path, "w") as log:
            log.write("$ " + " ".join(argv) + "\n\n")
            log.flush()
            try:
                proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            except OSError as err:
                proc = None
                run_error = f"could not start the trial: {err}"
                trial.exit_code = 127
            if proc is not None:
                try:
                    trial.exit_code = proc.wait(timeout=self.trial_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    trial.exit_code = proc.returncode
                    run_error = f"timed out after {self.trial_timeout:g} s (killed)"
                except BaseException:  # Ctrl-C: stop the trial, record it, then leave
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    trial.exit_code = proc.returncode
                    trial.state = "failed"
                    trial.error = f"interrupted (see {trial.log_path})"
                    trial.seconds = round(time.monotonic() - start, 2)
                    raise
        trial.seconds = round(time.monotonic() - start, 2)

        roots = [trial_dir] + ([Path(trial.run_dir)] if trial.run_dir else []) + [self.output]
        metric, history = _read_metric(trial, roots, self.config["metric"]["name"])
        if trial.exit_code != 0 or run_error:
            trial.state = "failed"
            trial.error = f"{run_error or f'exit code {trial.exit_code}'} (see {trial.log_path})"
        elif metric is None:
            trial.state = "failed"
        else:
            trial.state = "finished"
        trial.metric = metric

        # Back to the engine: a terminal SweepRun with the metric in its summary (and history).
        proposal.name = run_id
        proposal.state = sweeps.RunState.finished if trial.state == "finished" else sweeps.RunState.failed
        proposal.summary_metrics = dict(trial.summary)
        proposal.history = history
        proposal.exitcode = trial.exit_code
        self.on_trial("end", trial)
        return trial

    # -- the loop --------------------------------------------------------------------------------
    def resume(self) -> int:
        """Continue, or join, the sweep recorded in `output/sweep.json`: its trials go back to the engine (so a
        grid does not repeat points and bayes learns from them) and new trials are numbered after them.
        Returns how many trials were loaded."""
        self.sweep_id = json.loads((self.output / "sweep.json").read_text())["sweep_id"]
        self._sync()
        return len(self.trials)

    def _sync(self) -> None:
        """Take the other agents' trials from sweep.json (held lock); this agent's own stay as it knows them."""
        path = self.output / "sweep.json"
        if not path.is_file():
            return
        state = json.loads(path.read_text())
        if state["sweep_id"] != self.sweep_id:
            raise SystemExit(f"error: {self.output} holds sweep {state['sweep_id']} of another agent (started at the "
                             "same time); join it with --resume, or give this agent another --output")
        sweeps = import_sweeps()
        mine = {t.number: t for t in self.trials if t.number in self._mine}
        others = [Trial(**record) for record in state["trials"] if record["number"] not in self._mine]
        self.trials = sorted([*mine.values(), *others], key=lambda t: t.number)
        self._runs = [self._mine[t.number] if t.number in self._mine else _sweep_run(sweeps, t, self.metric_name)
                      for t in self.trials]

    @property
    def metric_name(self) -> str:
        return self.config["metric"]["name"]

    def run(self) -> LocalSweepResult:
        self.output.mkdir(parents=True, exist_ok=True)
        reason = "count"
        try:
            for _ in range(self.count):
                with locked(self.output):
                    self._sync()
                    proposal = self._propose()
                    if proposal is None:
                        reason = "exhausted"
                        break
                    trial = self._claim(max((t.number for t in self.trials), default=0) + 1, proposal)
                    write_leaderboard(self.result(reason))
                self._run_trial(trial, proposal)
                with locked(self.output):
                    self._sync()
                    write_leaderboard(self.result(reason))
        except KeyboardInterrupt:
            reason = "interrupted"
        with locked(self.output):
            self._sync()
            result = self.result(reason)
            write_leaderboard(result)
        return result

    def result(self, reason: str) -> LocalSweepResult:
        return LocalSweepResult(sweep_id=self.sweep_id, output=self.output, config=self.config,
                                trials=list(self.trials), stopped_reason=reason)


# -- leaderboard ------------------------------------------------------------------------------------
def _sweep_run(sweeps: Any, trial: Trial, metric: str) -> Any:
    """A recorded trial as the engine's SweepRun (running, finished or failed)."""
    history = [{metric: trial.metric}] if trial.metric is not None else []
    run = sweeps.SweepRun(name=trial.run_id, config={k: {"value": v} for k, v in trial.params.items()},
                          summaryMetrics=dict(trial.summary), sampledHistory=history)
    run.state = {"finished": sweeps.RunState.finished, "running": sweeps.RunState.running}.get(
        trial.state, sweeps.RunState.failed)
    return run

"""`lesion-lightning sweep {create,agent,local,validate}`: W&B hyperparameter sweeps (docs/sweeps.md).

* `create CONFIG [--project P] [--entity E]` registers a sweep YAML with a W&B server (`wandb.sweep`).
* `agent SWEEP_ID [--count N]` runs W&B's agent (`wandb.agent`): it asks the server for trials and runs
  each as the sweep's `command` (a normal `lesion-lightning fit` run). One agent per machine or per GPU.
* `local CONFIG --count N [--output DIR]` is the offline loop: W&B's own sweep engine proposes the
  trials, each runs as a W&B offline run, and a leaderboard (CSV, Markdown, PNG) is written.
* `validate CONFIG...` checks sweep YAMLs against W&B's schema.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sweep_command", metavar="ACTION")

    p = sub.add_parser("create", help="register a sweep YAML with a W&B server (wandb.sweep)",
                       description="Register a sweep with a W&B server or account; prints the sweep id for agents.")
    p.add_argument("config", help="sweep YAML, e.g. experiments/sweeps/lanet_sgd.yaml")
    p.add_argument("--project", default=None, help="W&B project (default: the YAML's `project`, else lesion-lightning)")
    p.add_argument("--entity", default=None, help="W&B entity (user or team)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)")
    p.set_defaults(_sweep=_create)

    p = sub.add_parser("agent", help="run a W&B sweep agent (wandb.agent)",
                       description="Run trials of a W&B sweep until it is done or --count trials ran. Start one "
                       "agent per machine, or one per GPU with CUDA_VISIBLE_DEVICES=<i>; run it from the "
                       "repository root (the sweep command names experiments/... relative paths).")
    p.add_argument("sweep_id", help="sweep id: entity/project/id, or an id with --project/--entity")
    p.add_argument("--count", type=int, default=None, help="number of trials this agent runs (default: until done)")
    p.add_argument("--project", default=None, help="W&B project")
    p.add_argument("--entity", default=None, help="W&B entity")
    p.set_defaults(_sweep=_agent)

    p = sub.add_parser("local", help="offline sweep loop: W&B's sweep engine + W&B offline runs + leaderboard",
                       description="Run a sweep without a W&B server: proposals from W&B's sweep engine, each "
                       "trial a W&B offline run of the sweep's command, a leaderboard in --output.",
                       epilog="Example: lesion-lightning sweep local experiments/sweeps/demo.yaml --count 3 "
                       "--trial-args='--data.root=/data/ham10000'")
    p.add_argument("config", help="sweep YAML, e.g. experiments/sweeps/demo.yaml")
    p.add_argument("--count", type=int, required=True, help="at most this many trials (a finished grid stops sooner)")
    p.add_argument("--output", default=None,
                   help="output folder for the leaderboard, trials and run folders "
                        "(default: runs/sweeps/<sweep name>-<timestamp>)")
    p.add_argument("--seed", type=int, default=None, help="seed the engine's random draws (random/bayes)")
    p.add_argument("--trial-timeout", type=float, default=None, help="kill a trial after this many seconds")
    p.add_argument("--cwd", default=None, help="working folder of the trials (default: the current folder)")
    p.add_argument("--run-folder-args", dest="run_folder_args", action="store_true", default=None,
                   help="append --output_root/--experiment/--run_name to each trial (default: when the trial is a "
                        "lesion-lightning LightningCLI command)")
    p.add_argument("--no-run-folder-args", dest="run_folder_args", action="store_false")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --output (its trials go back to the engine); --count more trials")
    p.add_argument("--no-validate", action="store_true", help="skip the W&B schema check of the YAML")
    p.add_argument("--trial-args", default="", metavar="'ARGS'",
                   help="arguments appended to every trial's command (one shell-quoted string; write it with `=`: "
                        "--trial-args='--data.root=/data/ham10000 --trainer.max_epochs=5')")
    p.set_defaults(_sweep=_local)

    p = sub.add_parser("validate", help="check sweep YAMLs against W&B's sweep schema")
    p.add_argument("configs", nargs="+", help="sweep YAML files")
    p.set_defaults(_sweep=_validate)


def run(args: argparse.Namespace) -> int:
    handler = getattr(args, "_sweep", None)
    if handler is None:
        print("usage: lesion-lightning sweep {create,agent,local,validate} ... (see --help)", file=sys.stderr)
        return 2
    return int(handler(args) or 0)


# -- actions --------------------------------------------------------------------------------------
def _load(path: str, validate: bool = True) -> dict:
    from lesion_lightning.sweeps.spec import SweepConfigError, load_sweep_config

    try:
        return load_sweep_config(path, validate=validate)
    except SweepConfigError as err:
        raise SystemExit(f"error: {err}") from None


def _validate(args: argparse.Namespace) -> int:
    from lesion_lightning.sweeps.spec import SweepConfigError, load_sweep_config

    bad = 0
    for path in args.configs:
        try:
            config = load_sweep_config(path)
        except SweepConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            bad += 1
            continue
        print(f"ok: {path} ({config.get('method')}, {len(config.get('parameters', {}))} parameters)")
    return 1 if bad else 0


def _create(args: argparse.Namespace) -> int:
    from lesion_lightning.sweeps.remote import WandbUnavailable, create_sweep
    from lesion_lightning.sweeps.spec import DEFAULT_PROJECT

    config = _load(args.config)
    project = args.project or config.get("project") or DEFAULT_PROJECT
    try:
        sweep_id = create_sweep(config, project=project, entity=args.entity, timeout=args.timeout)
    except WandbUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    where = "/".join(p for p in (args.entity, project, sweep_id) if p)
    print(f"Created sweep {sweep_id}. Start agents (from the repository root) with:\n"
          f"  lesion-lightning sweep agent {where}")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from lesion_lightning.sweeps.remote import WandbUnavailable, run_agent

    try:
        run_agent(args.sweep_id, count=args.count, project=args.project, entity=args.entity)
    except WandbUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _local(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lesion_lightning.sweeps.leaderboard import searched_parameters
    from lesion_lightning.sweeps.local import LocalSweep
    from lesion_lightning.sweeps.spec import SweepConfigError

    console = Console(stderr=True)
    config = _load(args.config, validate=not args.no_validate)
    name = config.get("name") or Path(args.config).stem
    config.setdefault("name", name)
    output = _local_output(args, name)
    extra = shlex.split(args.trial_args or "")
    metric = (config.get("metric") or {}).get("name", "?")
    searched = searched_parameters(config)

    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(f"sweep {name} ({config.get('method')})", total=args.count)

        def on_trial(event: str, trial) -> None:
            if event == "start":
                progress.update(task, description=f"sweep {name}: {trial.name} " +
                                ", ".join(f"{k.split('.')[-1]}={_short(trial.params[k])}" for k in searched))
                return
            progress.advance(task)
            if trial.state == "finished":
                progress.console.print(f"  {trial.name} [green]finished[/] {metric}={trial.metric:.4f} "
                                       f"({trial.seconds:.0f} s)")
            else:
                progress.console.print(f"  {trial.name} [red]failed[/]: {trial.error} (log: {trial.log_path})")

        try:
            sweep = LocalSweep(config, output, count=args.count, cwd=args.cwd, extra_args=extra,
                               run_folder_args=args.run_folder_args, trial_timeout=args.trial_timeout,
                               seed=args.seed, name=name, on_trial=on_trial)
        except (SweepConfigError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        if args.resume:
            loaded = sweep.resume()
            progress.console.print(f"Resuming sweep {sweep.sweep_id}: {loaded} earlier trial(s) in {output}")
        result = sweep.run()
        if result.stopped_reason == "exhausted":
            progress.update(task, total=len(result.trials))

    return _summary(result, metric, searched, output, console)


def _local_output(args: argparse.Namespace, name: str) -> Path:
    """The sweep's output folder; a new sweep never reuses one holding a sweep, --resume needs one."""
    output = Path(args.output) if args.output else \
        Path("runs") / "sweeps" / f"{name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if args.resume and not args.output:
        raise SystemExit("error: --resume needs --output (the folder of the sweep to continue)")
    recorded = (output / "sweep.json").is_file()
    if args.resume and not recorded:
        raise SystemExit(f"error: --resume: {output} holds no sweep.json")
    if recorded and not args.resume:
        raise SystemExit(f"error: {output} already holds a sweep (sweep.json): pass --resume to continue it, "
                         "or choose another --output")
    return output


def _summary(result, metric: str, searched: list[str], output: Path, console) -> int:
    finished = [t for t in result.trials if t.state == "finished"]
    best = result.best()
    console.print(f"{len(result.trials)} trial(s): {len(finished)} finished, {len(result.trials) - len(finished)} "
                  f"failed (stopped: {result.stopped_reason}).")
    if best is not None:
        console.print(f"Best: {best.name} {metric}={best.metric:.4f} " +
                      " ".join(f"{k}={_short(best.params[k])}" for k in searched if k in best.params))
    console.print(f"Leaderboard: {output / 'leaderboard.md'} (.csv, .png); trials: {output / 'trials'}")
    if result.stopped_reason == "interrupted":
        return 130
    return 0 if finished else 1


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

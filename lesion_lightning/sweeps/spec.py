"""Sweep YAML files: loading, validation with W&B's sweep engine, and building a trial's command.

A sweep file is an ordinary W&B sweep configuration (`method`, `metric`, `parameters`, `command`,
optional `early_terminate`). Validation uses the schema of W&B's open-source sweep engine (the
`sweeps` package, i.e. `wandb[sweeps]`), so a file that passes here is one the W&B server accepts.

A trial's command is built the way `wandb agent` builds it: wandb's `create_sweep_command` fills
`${envvar:NAME}` macros and `create_sweep_command_args` renders the values in every macro format
(`${args}`, `${args_no_hyphens}`, `${args_json}`, ...). `${args_json_file}` names a JSON file of
`{"dotted.param": value}` that LightningCLI reads as one more `--config` (jsonargparse accepts dotted
keys in a config file, and `null` stays None, unlike `--x=None` on the command line).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

# The agent's own default when a sweep has no `command`.
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
DEFAULT_PROJECT = "lesion-lightning"  # a sweep YAML without `project:` logs here (as training's --wandb_project)


class SweepConfigError(ValueError):
    """A sweep file that cannot be read or that W&B's sweep engine rejects (the message lists why)."""


def import_sweeps() -> Any:
    """The `sweeps` package (W&B's sweep engine), with a clear error when it is not installed."""
    try:
        with warnings.catch_warnings():
            # sweeps 0.2 declares its pydantic model with v1-style `class Config` (harmless under v2).
            warnings.simplefilter("ignore")
            import sweeps
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit("error: W&B's sweep engine is not installed: pip install 'sweeps>=0.2,<0.3' "
                         f"(or `make install`) ({err})") from err
    return sweeps


def schema_violations(config: dict[str, Any]) -> list[str]:
    """What W&B's sweep engine finds wrong with a sweep configuration (empty when valid)."""
    return list(import_sweeps().schema_violations_from_proposed_config(copy.deepcopy(config)))


def load_sweep_config(path: str | Path, validate: bool = True) -> dict[str, Any]:
    """Read a sweep YAML and (by default) check it against W&B's schema; raises SweepConfigError."""
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"{path}: no such sweep file")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(config, dict) or not config:
        raise SweepConfigError(f"{path}: a sweep file must be a non-empty mapping (method, metric, parameters, ...)")
    if validate:
        problems = schema_violations(config)
        if problems:
            listing = "\n  ".join(problems)
            raise SweepConfigError(f"{path}: not a valid W&B sweep configuration:\n  {listing}")
    return config


def sweep_command_args(params: dict[str, Any]) -> dict[str, Any]:
    """Every macro rendering of a trial's parameter values, from wandb's own agent code.

    `params` maps each parameter to its value; W&B's agent gets them as `{name: {"value": v}}`.
    """
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    return create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})


def expand_command(command: list[Any] | None, params: dict[str, Any], *, program: str | None,
                   args_json_file: str | Path, interpreter: str | None = None) -> list[str]:
    """The argv of one trial, as `wandb agent` would run it (see `wandb/wandb_agent.py` `_command_run`).

    Differences from the agent, both deliberate: `${interpreter}` is this Python (`sys.executable`,
    so trials use the same virtual environment) rather than the first `python` on PATH, and
    `${args_json_file}` is the path given here.
    """
    from wandb.sdk.launch.sweeps.utils import create_sweep_command

    template = create_sweep_command([str(c) for c in (command or DEFAULT_COMMAND)])
    macros: dict[str, Any] = dict(sweep_command_args(params))
    macros["interpreter"] = [interpreter or sys.executable]
    macros["program"] = [program] if program else []
    macros["args_json_file"] = [str(args_json_file)]
    macros["env"] = ["/usr/bin/env"] if platform.system() != "Windows" else []
    argv: list[str] = []
    for chunk in template:
        if chunk.startswith("${") and chunk.endswith("}"):
            name = chunk[2:-1]
            if name not in macros:
                raise SweepConfigError(f"sweep command uses an unknown macro {chunk}; known: "
                                       + ", ".join("${" + m + "}" for m in sorted(macros)))
            value = macros[name]
            argv += [str(v) for v in value] if isinstance(value, list) else [json.dumps(value)]
        else:
            argv.append(chunk)
    return argv


def write_agent_files(base_dir: str | Path, sweep_id: str, run_id: str, params: dict[str, Any]) -> tuple[Path, Path]:
    """Write what `wandb agent` writes before starting a trial, at the same relative paths.

    Returns (param_path, args_json_file): `base_dir/wandb/sweep-<id>/config-<run>.yaml` (wandb's
    config-file format, read by `wandb.init` through WANDB_SWEEP_PARAM_PATH so the values land in the
    run's config) and the `.json` beside it (`${args_json_file}`).
    """
    from wandb.sdk.lib.config_util import save_config_file_from_dict

    folder = Path(base_dir) / "wandb" / f"sweep-{sweep_id}"
    param_path = folder / f"config-{run_id}.yaml"
    json_path = folder / f"config-{run_id}.json"
    save_config_file_from_dict(str(param_path), {k: {"value": v} for k, v in params.items()})
    json_path.write_text(sweep_command_args(params)["args_json"][0])
    return param_path, json_path


def trial_environment(base: dict[str, str] | None, *, wandb_dir: Path, run_id: str, sweep_id: str,
                      param_path: Path, project: str = DEFAULT_PROJECT) -> dict[str, str]:
    """The environment of one offline trial: what the agent sets (run id, sweep id, param path, project),
    offline. In a sweep run W&B takes the project from WANDB_PROJECT, not from the trial's own logger;
    without it the runs land in a project named after the working folder."""
    env = dict(os.environ if base is None else base)
    env.update({
        "WANDB_MODE": "offline",
        "WANDB_PROJECT": project,
        "WANDB_DIR": str(wandb_dir),
        "WANDB_RUN_ID": run_id,
        "WANDB_SWEEP_ID": sweep_id,
        "WANDB_SWEEP_PARAM_PATH": str(param_path),
        "WANDB_SILENT": env.get("WANDB_SILENT", "true"),
    })
    return env

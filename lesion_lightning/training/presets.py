"""Paper presets: which experiment YAML under `experiments/` trains each registered model.

Every registry entry names its paper's training preset (`ModelSpec.preset`: `lanet`, `scsonet`,
`unet_aksoy`, `medlitenet`, `slsnet`); each model also has its own config file. A recipe lives in one
file; a model's file is either that recipe or a small overlay naming it (`config: ../lanet/ham10000.yaml`)
and setting `model.init_args.model` (the baselines take the recipe of the table that compares against them).
A paper's own variants (MedLiteNet B and C) are its recipe with the model named on the command line
(`preset_args`): an overlay nesting a recipe that appends callbacks would drop base.yaml's standard ones.

    lesion-lightning fit --config $(python -c "from lesion_lightning.training.presets import preset_config; print(preset_config('unet'))")
    lesion-lightning fit --config experiments/lanet/ham10000.yaml --data.dataset=ph2 --data.root=/data/PH2

The dataset is part of each file (the paper's main dataset) and is overridden on the command line.
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["EXPERIMENTS_DIR", "MODEL_CONFIGS", "RECIPE_CONFIGS", "VARIANTS", "experiments_dir", "preset_args",
           "preset_config", "preset_model", "list_presets"]

# model name -> config file (relative to experiments/)
MODEL_CONFIGS: dict[str, str] = {
    "lanet": "lanet/ham10000.yaml",
    "scsonet": "scsonet/isic2018.yaml",
    "unet_aksoy": "unet_aksoy/isic2018.yaml",
    "unet": "baselines/unet.yaml",
    "unetplusplus": "baselines/unetplusplus.yaml",
    "unet3plus": "baselines/unet3plus.yaml",
    "deeplabv3plus": "baselines/deeplabv3plus.yaml",
    "malunet": "baselines/malunet.yaml",
    "egeunet": "baselines/egeunet.yaml",
    "unet_small": "baselines/unet_small.yaml",
    "unetplusplus_small": "baselines/unetplusplus_small.yaml",
    "medlitenet": "medlitenet/isic2018.yaml",
    "medlitenet_b": "medlitenet/isic2018.yaml",  # with --model.init_args.model=medlitenet_b (VARIANTS)
    "medlitenet_c": "medlitenet/isic2018.yaml",
    "medlitenet_ensemble": "medlitenet/ensemble.yaml",
    "simple_unet": "demo.yaml",
}
# variants trained by their paper's recipe file, the model (and the run's experiment name) set on the command line
VARIANTS: frozenset[str] = frozenset({"medlitenet_b", "medlitenet_c"})
# registry preset name (ModelSpec.preset) -> the paper's own recipe file
RECIPE_CONFIGS: dict[str, str] = {
    "lanet": "lanet/ham10000.yaml",
    "scsonet": "scsonet/isic2018.yaml",
    "unet_aksoy": "unet_aksoy/isic2018.yaml",
    "medlitenet": "medlitenet/isic2018.yaml",
    "none": "demo.yaml",
}
# presets whose folder another module owns: the first YAML found there (e.g. experiments/slsnet/)
_FOLDER_PRESETS = ("slsnet",)


def experiments_dir() -> Path:
    """The `experiments/` folder of the checkout (beside the package), else `./experiments`."""
    beside = Path(__file__).resolve().parents[2] / "experiments"
    return beside if beside.is_dir() else Path.cwd() / "experiments"


EXPERIMENTS_DIR = experiments_dir()


def _folder_preset(name: str) -> Path | None:
    folder = experiments_dir() / name
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return files[0] if files else None


def preset_config(name: str, dataset: str | None = None) -> Path:
    """The experiment YAML for a model name or a registry preset name.

    Args:
        name: a registered model (`unet`, `medlitenet_b`, ...) or a `ModelSpec.preset` name.
        dataset: pick `experiments/<folder>/<dataset>.yaml` beside the default file when one exists
            (e.g. `preset_config("scsonet", "isic2017")`); otherwise override `--data.dataset`.

    Raises:
        KeyError: unknown name, or no file for the requested dataset (the message lists what exists).
    """
    rel = MODEL_CONFIGS.get(name) or RECIPE_CONFIGS.get(name)
    path = experiments_dir() / rel if rel else (_folder_preset(name) if name in _FOLDER_PRESETS else None)
    if path is None:
        known = sorted(set(MODEL_CONFIGS) | set(RECIPE_CONFIGS) | set(_FOLDER_PRESETS))
        raise KeyError(f"no preset config for {name!r}; known: {', '.join(known)}")
    if dataset is not None:
        candidate = path.parent / f"{dataset}.yaml"
        if candidate.is_file():
            return candidate
        if path.stem != dataset:
            others = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise KeyError(f"preset {name!r} has no {dataset!r} config in {path.parent} (found: {', '.join(others)}); "
                           f"use {path} with --data.dataset={dataset} --data.root=...")
    if not path.is_file():
        raise KeyError(f"preset config for {name!r} is missing: {path}")
    return path


def preset_args(name: str, dataset: str | None = None) -> list[str]:
    """The `fit` arguments that train `name` with its paper's preset: `--config FILE`, plus the model and
    experiment name for a variant sharing its recipe's file (`medlitenet_b` -> `--model.init_args.model=...`)."""
    path = preset_config(name, dataset)
    if name not in VARIANTS:
        return ["--config", str(path)]
    return ["--config", str(path), f"--model.init_args.model={name}", f"--experiment={name}_{path.stem}"]


def list_presets() -> dict[str, Path]:
    """Every model/preset name that has a config file -> that file."""
    out: dict[str, Path] = {}
    for name in sorted(set(MODEL_CONFIGS) | set(RECIPE_CONFIGS) | set(_FOLDER_PRESETS)):
        try:
            out[name] = preset_config(name)
        except KeyError:
            continue
    return out


def preset_model(path: str | Path) -> str | None:
    """The registry model an experiment YAML trains: its `model.init_args.model` (nested or as a dotted key),
    else that of the recipe it composes on (`config:`); None when neither names one."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    name = data.get("model.init_args.model") or ((data.get("model") or {}).get("init_args") or {}).get("model")
    if name is None and isinstance(data.get("config"), str):
        return preset_model(path.parent / data["config"])
    return name

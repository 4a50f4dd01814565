"""The paper recipes (one file each) and the overlays composed on them (a model or variant on a recipe).

Configs are resolved by the CLI's own parser, so `config:` inside an overlay composes exactly as
`lesion-lightning fit --config OVERLAY` composes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lesion_lightning.training.cli import build_cli
from lesion_lightning.training.presets import VARIANTS, experiments_dir, preset_args

EXPERIMENTS = experiments_dir()
LANET = EXPERIMENTS / "lanet" / "ham10000.yaml"
SCSONET = EXPERIMENTS / "scsonet" / "isic2018.yaml"
MEDLITENET = EXPERIMENTS / "medlitenet" / "isic2018.yaml"
# overlay -> the recipe it composes on (each table's baselines take that table's recipe)
OVERLAYS = {
    "baselines/unet.yaml": LANET,
    "baselines/unetplusplus.yaml": LANET,
    "baselines/unet3plus.yaml": LANET,
    "baselines/deeplabv3plus.yaml": LANET,
    "baselines/malunet.yaml": SCSONET,
    "baselines/egeunet.yaml": SCSONET,
    "baselines/unet_small.yaml": SCSONET,
    "baselines/unetplusplus_small.yaml": SCSONET,
    "scsonet/isic2017.yaml": SCSONET,
}
Resolve = Callable[[Path], dict[str, Any]]


@pytest.fixture(scope="module")
def resolve(tmp_path_factory: pytest.TempPathFactory) -> Resolve:
    """A preset's full config as the table runner composes it (`--config base.yaml --config PRESET`)."""
    out = tmp_path_factory.mktemp("runs")
    cache: dict[Path, dict[str, Any]] = {}

    def _resolve(path: Path) -> dict[str, Any]:
        if path not in cache:
            cli = build_cli(["--config", str(EXPERIMENTS / "base.yaml"), "--config", str(path), "--logger=none",
                             f"--output_root={out}"], run=False)
            cache[path] = cli.config.as_dict()
        return cache[path]

    return _resolve


def _recipe(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a recipe fixes: trainer, data and the task's options other than the model."""
    init = {k: v for k, v in cfg["model"]["init_args"].items() if k != "model"}
    return {"trainer": cfg["trainer"], "data": cfg["data"], "task": init, "amp": cfg["amp"],
            "class": cfg["model"]["class_path"], "seed": cfg["seed_everything"]}


def test_lanet_recipe(resolve: Resolve) -> None:
    cfg = resolve(LANET)
    init = cfg["model"]["init_args"]
    assert (init["model"], init["loss"], init["optimizer"], init["lr"], init["momentum"], init["scheduler"]) == (
        "lanet", "ce", "sgd", 0.01, 0.9, "none")
    assert init["weight_decay"] == 1e-4  # MATLAB sgdm's default L2Regularization
    assert (cfg["trainer"]["max_epochs"], cfg["data"]["batch_size"], cfg["data"]["image_size"],
            cfg["data"]["split"], cfg["data"]["augment"]) == (20, 32, 224, "80-10-10", "lanet")


@pytest.mark.parametrize("path, dataset", [(SCSONET, "isic2018"), (EXPERIMENTS / "scsonet" / "isic2017.yaml", "isic2017")])
def test_scsonet_recipe(resolve: Resolve, path: Path, dataset: str) -> None:
    cfg = resolve(path)
    init = cfg["model"]["init_args"]
    assert (init["optimizer"], init["lr"], init["weight_decay"], init["scheduler"]) == ("adamw", 0.001, 0.01, "cosine")
    assert init["scheduler_kwargs"] == {"t_max": 50, "eta_min": 1e-5}
    assert init["loss"] == {"name": "bce_dice", "bce_weight": 1.0, "dice_weight": 1.0, "per_image": True}
    assert (cfg["trainer"]["max_epochs"], cfg["data"]["batch_size"], cfg["data"]["image_size"], cfg["data"]["split"],
            cfg["data"]["augment"], cfg["data"]["dataset"]) == (300, 8, 256, "70-30", "scsonet", dataset)
    assert cfg["experiment"] == f"scsonet_{dataset}"


def test_unet_aksoy_recipe(resolve: Resolve) -> None:
    cfg = resolve(EXPERIMENTS / "unet_aksoy" / "isic2018.yaml")
    init = cfg["model"]["init_args"]
    assert (init["optimizer"], init["lr"]) == ("adam", 0.001)
    assert (cfg["trainer"]["max_epochs"], cfg["data"]["batch_size"], cfg["data"]["image_size"]) == (30, 16, 128)


def test_medlitenet_recipe(resolve: Resolve) -> None:
    cfg = resolve(MEDLITENET)
    init = cfg["model"]["init_args"]
    assert (init["optimizer"], init["lr"], init["weight_decay"], init["scheduler"]) == ("adamw", 0.001, 0.01, "cosine")
    assert init["loss"] == {"name": "bce_dice", "bce_weight": 0.5, "dice_weight": 0.5}
    trainer = cfg["trainer"]
    assert (trainer["max_epochs"], trainer["gradient_clip_val"], trainer["accumulate_grad_batches"], cfg["amp"]) == (
        300, 0.5, 2, True)
    assert (cfg["data"]["batch_size"], cfg["data"]["image_size"], cfg["data"]["split"]) == (16, 256, "official")
    # base.yaml's standard callbacks, then the recipe's EMA and progressive resizing, each once
    names = [c["class_path"].rsplit(".", 1)[-1] for c in trainer["callbacks"]]
    assert names.count("EMAWeightAveraging") == names.count("ProgressiveResizeCallback") == 1
    assert names[:2] == ["ModelCheckpoint", "ModelCheckpoint"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_is_its_recipe_with_another_model(resolve: Resolve, overlay: str) -> None:
    path, recipe = EXPERIMENTS / overlay, OVERLAYS[overlay]
    raw = yaml.safe_load(path.read_text())
    # small: it names its recipe and sets the model (or the dataset) and the experiment, nothing else
    assert (path.parent / raw["config"]).resolve() == recipe.resolve(), f"{overlay} composes on {raw['config']}"
    task_keys = {k for k in raw if k.startswith("model.init_args.")}  # the model, and a model's own loss
    assert set(raw) - task_keys <= {"config", "experiment", "data.dataset"}, sorted(raw)
    assert task_keys <= {"model.init_args.model", "model.init_args.loss"}, sorted(task_keys)
    cfg, base = resolve(path), resolve(recipe)
    assert cfg["experiment"] == raw["experiment"] != base["experiment"]
    ours, theirs = _recipe(cfg), _recipe(base)
    if "model.init_args.loss" in raw:
        assert ours["task"]["loss"] == raw["model.init_args.loss"] != theirs["task"]["loss"]
        ours["task"] = {**ours["task"], "loss": theirs["task"]["loss"]}
    if "data.dataset" in raw:  # a dataset overlay changes only the dataset
        assert ours["data"]["dataset"] == raw["data.dataset"] != theirs["data"]["dataset"]
        ours["data"] = {**ours["data"], "dataset": theirs["data"]["dataset"]}
    assert ours == theirs  # e.g. LANET's SGD stays SGD: the overlay does not reset the task options
    assert cfg["model"]["init_args"]["model"] == raw.get("model.init_args.model", base["model"]["init_args"]["model"])


def test_every_preset_with_a_parent_is_checked() -> None:
    composed = {str(p.relative_to(EXPERIMENTS)) for p in EXPERIMENTS.glob("*/*.yaml")
                if p.parent.name not in ("tables", "sweeps", "cross_eval") and "config" in yaml.safe_load(p.read_text())}
    assert composed == set(OVERLAYS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_is_its_recipe_with_the_model_named(tmp_path: Path, resolve: Resolve, variant: str) -> None:
    args = preset_args(variant)
    assert args[:2] == ["--config", str(MEDLITENET)]
    cli = build_cli(["--config", str(EXPERIMENTS / "base.yaml"), *args, "--logger=none",
                     f"--output_root={tmp_path}"], run=False)
    cfg, base = cli.config.as_dict(), resolve(MEDLITENET)
    assert _recipe(cfg) == _recipe(base)  # base.yaml's callbacks, then EMA and progressive resizing
    assert cfg["model"]["init_args"]["model"] == variant and cfg["experiment"] == f"{variant}_isic2018"


def test_a_nested_recipe_cannot_append_callbacks(tmp_path: Path, resolve: Resolve) -> None:
    """Why the MedLiteNet variants are their recipe plus command-line options, not overlay files: nesting
    the recipe (`config:`) loses base.yaml's callbacks. When this fails, jsonargparse composes them."""
    overlay = tmp_path / "variant.yaml"
    overlay.write_text(f"config: {MEDLITENET}\nexperiment: nested\nmodel.init_args.model: medlitenet_b\n")
    nested = [c["class_path"] for c in resolve(overlay)["trainer"]["callbacks"]]
    standard = [c["class_path"] for c in resolve(MEDLITENET)["trainer"]["callbacks"]]
    assert len(nested) < len(standard) and "pytorch_lightning.callbacks.ModelCheckpoint" not in nested


def test_egeunet_trains_with_its_official_deep_supervision_loss(resolve: Resolve) -> None:
    loss = resolve(EXPERIMENTS / "baselines" / "egeunet.yaml")["model"]["init_args"]["loss"]
    scsonet = resolve(SCSONET)["model"]["init_args"]["loss"]
    assert loss == {"name": "deep_supervision", "loss": scsonet, "aux_weights": [0.1, 0.2, 0.3, 0.4, 0.5]}

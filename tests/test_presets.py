"""Paper presets (experiments/<model>/*.yaml): they parse, build, and train every model through `fit`;
MedLiteNet's full recipe (EMA, progressive resizing, clipping, accumulation, bf16 AMP); the ensemble of
trained runs evaluated through `test`."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from pytorch_lightning.callbacks import EMAWeightAveraging

from lesion_lightning.callbacks.progressive_resize import ProgressiveResizeCallback
from lesion_lightning.cli import main
from lesion_lightning.models import create_model, get_model_spec, list_models
from lesion_lightning.training.cli import build_cli
from lesion_lightning.training.presets import (
    MODEL_CONFIGS,
    RECIPE_CONFIGS,
    VARIANTS,
    experiments_dir,
    preset_args,
    preset_config,
    preset_model,
)
from lesion_lightning.training.ensemble import EnsembleTask
from lesion_lightning.training.task import SegmentationTask

EXPERIMENTS = experiments_dir()
OWN_FOLDERS = ("lanet", "scsonet", "unet_aksoy", "baselines", "medlitenet")
PRESET_FILES = sorted(p for folder in OWN_FOLDERS for p in (EXPERIMENTS / folder).glob("*.yaml"))
TRAINABLE = [p for p in PRESET_FILES if p.name != "ensemble.yaml"]
# The models this module trains through their presets (slsnet has its own adversarial preset and owner).
MODELS = ("lanet", "scsonet", "unet_aksoy", "unet", "unetplusplus", "unet3plus", "deeplabv3plus", "medlitenet",
          "egeunet", "malunet", "unet_small", "unetplusplus_small")
FAST = ("lanet", "unet_aksoy", "medlitenet")  # the rest (larger, or slower per step on CPU) are marked slow


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _tiny_schedule(tmp_path: Path, sizes: tuple[int, ...] = (32,), decay: float = 0.999) -> Path:
    """Overlay: the standard callbacks of base.yaml, then the MedLiteNet recipe callbacks with a tiny
    progressive-resize schedule (a `callbacks:` list replaces the preset's whole list)."""
    overlay = {"trainer": {"callbacks": _load(EXPERIMENTS / "base.yaml")["trainer"]["callbacks"] + [
        {"class_path": "pytorch_lightning.callbacks.EMAWeightAveraging", "init_args": {"decay": decay}},
        {"class_path": "lesion_lightning.callbacks.progressive_resize.ProgressiveResizeCallback",
         "init_args": {"schedule": {i: s for i, s in enumerate(sizes)}}},
    ]}}
    path = tmp_path / "tiny_resize.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def _sample_args(tmp_path: Path, root: Path, size: int = 32, batch: int = 2) -> list[str]:
    return [
        "--data.dataset=ham10000", f"--data.root={root}", "--data.split=80-10-10", f"--data.image_size={size}",
        f"--data.batch_size={batch}", "--data.num_workers=0", f"--data.cache={tmp_path / 'cache'}",
        f"--output_root={tmp_path / 'runs'}", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
        "--trainer.enable_model_summary=false",
    ]


# -- the files ---------------------------------------------------------------------------------------
def test_every_registered_model_has_a_preset_file() -> None:
    for name in list_models():
        if name == "slsnet":
            continue  # experiments/slsnet/ belongs to the adversarial task
        path = preset_config(name)
        assert path.is_file(), name
        if name in VARIANTS:  # the recipe of its paper, the model named on the command line
            assert preset_args(name)[2:] == [f"--model.init_args.model={name}", f"--experiment={name}_isic2018"]
            assert preset_model(path) == "medlitenet"
        elif name not in ("medlitenet_ensemble",):
            assert preset_model(path) == name, f"{path} trains {preset_model(path)}, not {name}"
    for preset in {get_model_spec(n).preset for n in list_models()} - {"slsnet"}:
        assert preset_config(preset) == EXPERIMENTS / RECIPE_CONFIGS[preset]
    assert preset_config("scsonet", "isic2017") == EXPERIMENTS / "scsonet" / "isic2017.yaml"
    with pytest.raises(KeyError, match="no preset config for 'nope'"):
        preset_config("nope")
    with pytest.raises(KeyError, match="has no 'ph2' config"):
        preset_config("scsonet", "ph2")
    assert set(MODELS) <= set(MODEL_CONFIGS)


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_preset_parses_and_builds_through_the_cli(path: Path, tmp_path: Path) -> None:
    args = ["--config", str(path), f"--output_root={tmp_path / 'runs'}", "--logger=none"]
    if path.name == "ensemble.yaml":
        with pytest.raises(ValueError, match="model.members"):
            build_cli(args, run=False)
        return
    cli = build_cli(args, run=False)
    assert isinstance(cli.model, SegmentationTask)
    assert cli.model.model_name == preset_model(path)
    assert cli.config["experiment"], f"{path}: set `experiment` so runs of different models do not share a folder"


def test_medlitenet_recipe_builds_ema_progressive_resize_clipping_accumulation_amp(tmp_path: Path) -> None:
    cli = build_cli(["--config", str(EXPERIMENTS / "medlitenet" / "isic2018.yaml"), "--logger=none",
                     f"--output_root={tmp_path / 'runs'}"], run=False)
    trainer, task = cli.trainer, cli.model
    ema = [c for c in trainer.callbacks if isinstance(c, EMAWeightAveraging)]
    resize = [c for c in trainer.callbacks if isinstance(c, ProgressiveResizeCallback)]
    assert len(ema) == 1 and len(resize) == 1
    assert resize[0].schedule == {0: (256, 256), 100: (384, 384), 200: (512, 512)}
    assert trainer.gradient_clip_val == 0.5 and trainer.gradient_clip_algorithm == "norm"
    assert trainer.accumulate_grad_batches == 2
    assert trainer.max_epochs == 300
    assert trainer.precision == ("16-mixed" if torch.cuda.is_available() else "bf16-mixed")
    hp = task.hparams
    assert (hp.optimizer, hp.lr, hp.scheduler) == ("adamw", 0.001, "cosine")
    assert dict(hp.loss) == {"name": "bce_dice", "bce_weight": 0.5, "dice_weight": 0.5}
    assert (cli.datamodule.batch_size, cli.datamodule.augment, cli.datamodule.image_size) == (16, "medlitenet", (256, 256))
    # EMA decay 0.999: one update of a parameter from 0 towards 1 moves it by 0.001.
    avg_fn = ema[0]._kwargs["avg_fn"]
    assert float(avg_fn(torch.zeros(1), torch.ones(1), torch.tensor(1))) == pytest.approx(0.001)


def test_ensemble_of_medlitenet_variants_is_under_10m_params() -> None:
    counts = {v: sum(p.numel() for p in create_model(v).parameters()) for v in ("medlitenet", "medlitenet_b", "medlitenet_c")}
    assert all(n < 3_300_000 for n in counts.values()), counts
    assert sum(counts.values()) < 10_000_000, counts
    ensemble = create_model("medlitenet_ensemble")
    assert sum(p.numel() for p in ensemble.parameters()) == sum(counts.values())


# -- every model trains through its preset on the real sample ----------------------------------------
def _fast_dev_run(model: str, tmp_path: Path, root: Path) -> None:
    extra = ["--config", str(_tiny_schedule(tmp_path))] if model.startswith("medlitenet") else []
    cli = build_cli(["fit", *preset_args(model), *extra, *_sample_args(tmp_path, root),
                     "--trainer.fast_dev_run=true", "--logger=none", "--run_name=fdr"])
    run = next((tmp_path / "runs").glob("*/fdr"))
    assert (run / "environment.json").exists()
    assert cli.model.model_name == model and cli.datamodule.dataset == "ham10000"
    assert cli.trainer.global_step == 1  # one optimiser step on a real batch
    assert torch.isfinite(torch.tensor(float(cli.trainer.callback_metrics["train/loss"])))


@pytest.mark.parametrize("model", FAST)
def test_fast_dev_run_through_preset(model: str, tmp_path: Path, ham10000_root: Path) -> None:
    _fast_dev_run(model, tmp_path, ham10000_root)


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in MODELS if m not in FAST] + ["medlitenet_b", "medlitenet_c"])
def test_fast_dev_run_through_preset_large(model: str, tmp_path: Path, ham10000_root: Path) -> None:
    _fast_dev_run(model, tmp_path, ham10000_root)


@pytest.mark.slow
def test_medlitenet_full_recipe_on_real_sample(tmp_path: Path, ham10000_root: Path) -> None:
    """3 epochs of the whole recipe: EMA + progressive resize 32 -> 48 -> 64 + clipping + accumulation + bf16."""
    cli = build_cli(["fit", "--config", str(EXPERIMENTS / "medlitenet" / "isic2018.yaml"),
                     "--config", str(_tiny_schedule(tmp_path, (32, 48, 64))),
                     *_sample_args(tmp_path, ham10000_root, size=32, batch=4),
                     "--trainer.max_epochs=3", "--logger=csv", "--run_name=recipe", "--amp=true"])
    trainer = cli.trainer
    assert trainer.precision == "bf16-mixed"
    assert trainer.gradient_clip_val == 0.5 and trainer.accumulate_grad_batches == 2
    run = tmp_path / "runs" / "medlitenet_isic2018" / "recipe"
    # progressive resizing: the logged training size per epoch
    with open(run / "csv" / "metrics.csv") as fh:
        sizes = [float(r["train/image_size"]) for r in csv.DictReader(fh) if r.get("train/image_size")]
    assert sizes == [32.0, 48.0, 64.0]
    # accumulation 2: 24 training images, batch 4 -> 6 batches -> 3 optimiser steps per epoch
    assert trainer.global_step == 9
    # checkpoints carry the EMA weights in state_dict and the raw weights under current_model_state
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert {"current_model_state", "averaging_state"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 9  # last.ckpt is the latest epoch, improved or not
    assert int(ckpt["averaging_state"]["n_averaged"]) == 9  # one EMA update per optimiser step
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert set(ema) == set(raw)
    diffs = [float((ema[k].float() - raw[k].float()).abs().max()) for k in ema if ema[k].is_floating_point()]
    assert max(diffs) > 0, "EMA weights equal the raw weights"
    # at the end of fit Lightning copies the EMA weights into the model
    model_state = cli.model.state_dict()
    assert all(torch.equal(model_state[k].cpu(), ema[k]) for k in ema)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["val"]["dice"] <= 1.0
    # `test` of that checkpoint (with the recipe's EMA callback in its config) scores the EMA weights, and
    # Lightning's notice that the averaging state is not restored outside fit is not shown
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tested = build_cli(["test", "--config", str(run / "config.yaml"), "--logger=none",
                            f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    assert any(isinstance(c, EMAWeightAveraging) for c in tested.trainer.callbacks)
    tested_state = tested.model.state_dict()
    assert all(torch.equal(tested_state[k].cpu(), ema[k]) for k in ema)
    assert not [w for w in caught if "WeightAveraging" in str(w.message)], [str(w.message) for w in caught]


# -- ensemble of trained runs through `test` ----------------------------------------------------------
def _member_checkpoint(path: Path, seed: int, num_classes: int = 1) -> Path:
    """A trained-run checkpoint as Lightning writes it (hyperparameters + state_dict) of a small model."""
    torch.manual_seed(seed)
    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 4, "num_classes": num_classes},
                            loss="bce_dice" if num_classes == 1 else "ce")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": "2.6.0", "epoch": 0, "global_step": 0}, path)
    return path


def _ensemble_args(tmp_path: Path, root: Path, members: list[Path], *extra: str) -> list[str]:
    return ["test", "--config", str(EXPERIMENTS / "medlitenet" / "ensemble.yaml"),
            f"--model.init_args.members=[{','.join(str(m) for m in members)}]",
            *_sample_args(tmp_path, root, size=32, batch=4), "--data.augment=none", "--logger=none", *extra]


def test_ensemble_task_weights_and_output(tmp_path: Path) -> None:
    members = [_member_checkpoint(tmp_path / f"m{i}.ckpt", seed=i, num_classes=1 + (i == 2)) for i in range(3)]
    task = EnsembleTask(members=[str(m) for m in members], weights=[0.9, 0.8, 0.7]).eval()
    assert sum(task.member_weights) == pytest.approx(1.0)
    assert task.member_weights == pytest.approx([0.9 / 2.4, 0.8 / 2.4, 0.7 / 2.4])
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        probs = [torch.sigmoid(t.model(x)) if i < 2 else torch.softmax(t.model(x), 1)[:, 1:2]
                 for i, t in enumerate(SegmentationTask.load_from_checkpoint(m).eval() for m in members)]
        expected = sum(w * p for w, p in zip(task.member_weights, probs))
        assert torch.allclose(torch.sigmoid(task(x)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="model.members"):
        EnsembleTask(members=[str(members[0])])
    with pytest.raises(ValueError, match="model.weights"):
        EnsembleTask(members=[str(m) for m in members], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="model.max_params"):
        EnsembleTask(members=[str(m) for m in members], max_params=1000)
    with pytest.raises(ValueError, match="model.members: cannot load"):
        EnsembleTask(members=[str(members[0]), str(tmp_path / "missing.ckpt")])


def test_ensemble_through_cli_test_with_val_dice_weights(tmp_path: Path, ham10000_root: Path) -> None:
    members = [_member_checkpoint(tmp_path / f"run{i}" / "checkpoints" / "best-000.ckpt", seed=10 + i) for i in range(3)]
    run_dirs = [m.parent.parent for m in members]  # run folders work as members
    cli = build_cli(_ensemble_args(tmp_path, ham10000_root, run_dirs, "--run_name=ens"))
    run = tmp_path / "runs" / "medlitenet_ensemble" / "ens"
    report = json.loads((run / "ensemble.json").read_text())
    weights = [m["weight"] for m in report["members"]]
    scores = [m["score"] for m in report["members"]]
    assert report["weights_source"] == "val_dice"
    assert sum(weights) == pytest.approx(1.0)
    # the weights are the members' validation Dice, measured independently here
    val = cli.datamodule.val_dataloader()
    task: EnsembleTask = cli.model
    assert task.measure_member_dice(val) == pytest.approx(scores)
    assert weights == pytest.approx([s / sum(scores) for s in scores])
    assert report["total_params"] == sum(sum(p.numel() for p in SegmentationTask.load_from_checkpoint(m).model.parameters())
                                         for m in members)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["dice"] <= 1.0
    assert (run / "per_image_test.csv").exists()
    # the same members with --tta=true: TTA of the whole ensemble
    cli_tta = build_cli(_ensemble_args(tmp_path, ham10000_root, run_dirs, "--run_name=ens_tta", "--tta=true"))
    assert cli_tta.model.tta is True
    assert json.loads((tmp_path / "runs" / "medlitenet_ensemble" / "ens_tta" / "ensemble.json").read_text())["tta"] is True


def test_ensemble_refuses_fit_and_mismatched_normalisation(tmp_path: Path, ham10000_root: Path, capsys) -> None:
    members = [_member_checkpoint(tmp_path / f"m{i}.ckpt", seed=i) for i in range(2)]
    args = _ensemble_args(tmp_path, ham10000_root, members)
    with pytest.raises(SystemExit) as excinfo:
        main(["fit", *args[1:]])
    assert "EnsembleTask evaluates trained members" in str(excinfo.value.code)
    bad = [a for a in args if a != "--data.augment=none"]  # ensemble.yaml's medlitenet preset: ImageNet normalisation
    assert main(bad) == 1  # one `error:` line, no traceback
    err = capsys.readouterr().err
    assert "data.augment='medlitenet'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("--tta=maybe", "tta"),
        ("--model.init_args.weights=bogus", "model.weights"),
        ("--model.init_args.max_params=10", "model.max_params"),
    ],
)
def test_bad_ensemble_and_tta_options_fail_naming_them(bad: str, expected: str, tmp_path: Path, ham10000_root: Path,
                                                       capsys) -> None:
    members = [_member_checkpoint(tmp_path / f"m{i}.ckpt", seed=i) for i in range(2)]
    try:  # a parse error exits; a value the task refuses is one `error:` line and exit code 1
        rc, message = main([*_ensemble_args(tmp_path, ham10000_root, members), bad]), ""
    except SystemExit as exc:
        rc, message = exc.code, str(exc.code)
    assert rc not in (0, None)
    assert expected in message + capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/*/metrics.json"))

"""The training entry point: LightningCLI fit/test, run folder, W&B offline contents, bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lesion_lightning.cli import main

REPO = Path(__file__).resolve().parent.parent
DEMO = str(REPO / "experiments" / "demo.yaml")


def _fit_args(tmp_path: Path, ham10000_root: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", DEMO,
        f"--data.root={ham10000_root}", "--data.image_size=64", "--data.batch_size=4",
        f"--data.cache={tmp_path / 'cache'}", f"--output_root={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false", *extra,
    ]


def test_fast_dev_run_through_cli(tmp_path, ham10000_root):
    main(_fit_args(tmp_path, ham10000_root, "--trainer.fast_dev_run=true", "--logger=none", "--run_name=fdr"))
    assert (tmp_path / "runs" / "demo" / "fdr" / "environment.json").exists()


def test_fit_then_test_writes_run_folder_and_wandb_offline(tmp_path, ham10000_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    main(_fit_args(tmp_path, ham10000_root, "--trainer.max_epochs=2", "--run_name=r1"))
    run = tmp_path / "runs" / "demo" / "r1"
    for name in ("config.yaml", "split.json", "environment.json", "complexity.json", "metrics.json",
                 "checkpoints/last.ckpt", "curves.png"):
        assert (run / name).exists(), f"missing {name} in the run folder"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["image_size"] == 64
    assert config["model"]["init_args"]["model"] == "simple_unet"
    split = json.loads((run / "split.json").read_text())
    assert split["dataset"] == "ham10000" and split["scheme"] == "80-10-10"
    assert set(split["subsets"]) == {"train", "val", "test"}
    environment = json.loads((run / "environment.json").read_text())
    assert environment["packages"]["torch"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["val"]["dice"] <= 1.0 and metrics["val"]["epoch"] == 1

    # test the best checkpoint of that run: test metrics and the per-image CSV join the run folder
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert best, "no best checkpoint saved"
    test_args = _fit_args(tmp_path, ham10000_root, "--run_name=r1", f"--ckpt_path={best[-1]}")
    main(["test", *test_args[1:]])
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val", "test"} <= set(metrics)
    per_image = (run / "per_image_test.csv").read_text().splitlines()
    assert len(per_image) - 1 == len(split["subsets"]["test"])

    # what W&B wrote offline can be read back: resolved config and summary metrics
    from lesion_lightning.utils.wandb_offline import find_offline_runs, read_run

    runs = find_offline_runs(run)
    assert runs, "no offline W&B run written"
    offline = read_run(runs[0])
    assert offline.config["cli"]["data"]["image_size"] == 64
    assert "val/dice" in offline.summary
    assert abs(float(offline.summary["val/dice"]) - metrics["val"]["dice"]) < 1e-6


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("--data.batch_size=many", "batch_size"),
        ("--model.init_args.lrr=0.1", "lrr"),
        ("--model.init_args.optimizer=rmsprop", "optimizer"),
        ("--data.split=90-10", "split"),
    ],
)
def test_bad_option_fails_before_work_naming_it(tmp_path, ham10000_root, capsys, bad, expected):
    # a parse error exits (SystemExit); a value the task or data module refuses is one `error:` line, exit 1
    try:
        rc = main(_fit_args(tmp_path, ham10000_root, bad, "--logger=none", "--trainer.fast_dev_run=true"))
        message = ""
    except SystemExit as exc:
        rc, message = exc.code, str(exc.code)
    message += capsys.readouterr().err
    assert rc not in (0, None)
    assert expected in message and "Traceback" not in message
    assert not list((tmp_path / "runs").glob("*/*/checkpoints/*.ckpt"))


def test_standard_callbacks_come_from_base_yaml_and_a_yaml_can_drop_one(tmp_path, ham10000_root):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lesion_lightning.callbacks import PredictionGridCallback
    from lesion_lightning.training.cli import build_cli

    tiny = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--logger=none"]
    cli = build_cli(_fit_args(tmp_path, ham10000_root, *tiny, "--run_name=standard"))
    run = tmp_path / "runs" / "demo" / "standard"
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    # Lightning's own ModelCheckpoint twice (best by val/dice, last every epoch), writing into the run folder
    assert {type(c) for c in checkpoints} == {ModelCheckpoint} and len(checkpoints) == 2
    assert {c.monitor for c in checkpoints} == {"val/dice", None}
    assert all(Path(c.dirpath) == (run / "checkpoints").resolve() for c in checkpoints)
    assert (run / "predictions" / "epoch_000.png").exists()

    # a YAML that lists trainer.callbacks without PredictionGridCallback: no prediction grid, the rest as before
    base = yaml.safe_load((REPO / "experiments" / "base.yaml").read_text())["trainer"]["callbacks"]
    kept = [c for c in base if not c["class_path"].endswith("PredictionGridCallback")]
    assert len(kept) == len(base) - 1
    overlay = tmp_path / "no_grid.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": kept}}))
    args = _fit_args(tmp_path, ham10000_root, *tiny, "--run_name=no_grid")
    cli = build_cli([*args[:3], "--config", str(overlay), *args[3:]])
    run = tmp_path / "runs" / "demo" / "no_grid"
    assert not any(isinstance(c, PredictionGridCallback) for c in cli.trainer.callbacks)
    assert not (run / "predictions").exists()
    assert (run / "checkpoints" / "last.ckpt").exists() and list((run / "checkpoints").glob("best-*.ckpt"))

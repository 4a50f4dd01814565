"""`lesion-lightning export`: ONNX / TorchScript / safetensors reproduce PyTorch; model card; every registered model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_lightning.cli import main
from lesion_lightning.inference.export import ExportError, export_loaded, parse_size
from lesion_lightning.inference import LoadedTask, Preprocessing, load_predictor
from lesion_lightning.models import create_model, list_models
from lesion_lightning.training.task import SegmentationTask

from tiny_run import fit_tiny_run

TOL = 1e-4
# Exported in the default run; the others (heavier graphs, or the slower dynamo exporter) are slow tests.
FAST_MODELS = {"simple_unet", "lanet", "egeunet"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real run folder (config.yaml, metrics.json, environment.json, checkpoints) from the training CLI."""
    return fit_tiny_run(tmp_path_factory.mktemp("export_run"))


@pytest.fixture(scope="module")
def real_batch(tiny_run) -> torch.Tensor:
    """Two real HAM10000 images preprocessed as the run's predictor does (64x64, x / 255)."""
    from lesion_lightning.data.io import load_image
    from lesion_lightning.paths import sample_dataset_root

    files = sorted((sample_dataset_root("ham10000") / "HAM10000_images_part_1").glob("*.jpg"))[:2]
    predictor = load_predictor(tiny_run)
    return torch.stack([predictor.preprocess(load_image(p)) for p in files])


def _card(path: Path) -> dict:
    card_path = path.with_suffix(".json")
    assert card_path.exists(), "no model card beside the export"
    return json.loads(card_path.read_text())


def test_onnx_export_matches_pytorch_on_real_images_with_dynamic_axes(tiny_run, real_batch, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    assert main(["export", "--ckpt", str(tiny_run), "--format", "onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and "dynamic" in printed
    card = _card(out)
    assert card["export"]["spatial"] == "dynamic"
    assert card["export"]["dynamic_axes"] == ["batch", "height", "width"]
    assert all(v < TOL for v in card["export"]["max_abs_diff"].values())

    predictor = load_predictor(tiny_run)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    # the real images at the working size, and at another size and batch (dynamic axes)
    bigger = torch.nn.functional.interpolate(real_batch, size=(96, 128), mode="bilinear", align_corners=False)
    for x in (real_batch[:1], real_batch, bigger):
        ours = session.run(None, {"image": x.numpy()})[0]
        ref = predictor.forward_batch(x).numpy()
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < TOL


def test_torchscript_export_matches_pytorch(tiny_run, real_batch, tmp_path):
    out = tmp_path / "model.pt"
    assert main(["export", "--ckpt", str(tiny_run), "--format", "torchscript", "--output", str(out)]) == 0
    card = _card(out)
    assert card["export"]["spatial"] == "dynamic"
    scripted = torch.jit.load(str(out))
    predictor = load_predictor(tiny_run)
    bigger = torch.nn.functional.interpolate(real_batch, size=(128, 96), mode="bilinear", align_corners=False)
    with torch.no_grad():
        for x in (real_batch, bigger):
            assert (scripted(x) - predictor.forward_batch(x)).abs().max().item() < TOL


def test_safetensors_weights_and_model_card(tiny_run, real_batch, tmp_path):
    from safetensors.torch import load_file

    from lesion_lightning.utils.complexity import measure_complexity

    out = tmp_path / "weights.safetensors"
    assert main(["export", "--ckpt", str(tiny_run), "--format", "safetensors", "--output", str(out),
                 "--size", "64"]) == 0
    card = _card(out)
    arch = card["architecture"]
    assert arch["name"] == "simple_unet" and arch["kwargs"] == {"base_width": 4}
    model = create_model(arch["name"], **arch["kwargs"]).eval()
    model.load_state_dict(load_file(str(out)))
    predictor = load_predictor(tiny_run)
    with torch.no_grad():
        assert torch.equal(model(real_batch), predictor.task.model(real_batch))
    complexity = measure_complexity(model, (3, 64, 64))
    assert card["params"] == complexity.params and card["macs"] == complexity.macs > 0
    assert card["input"]["image_size"] == [64, 64]
    assert card["input"]["normalisation"]["transform_set"] == "none" and card["input"]["normalisation"]["formula"] == "x / 255"
    assert card["threshold"] == 0.5
    assert card["training_data"]["dataset"] == "ham10000" and card["training_data"]["split"] == "80-10-10"
    assert set(card["training_data"]["split_manifest"]["subset_sizes"]) == {"train", "val", "test"}
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert card["metrics"]["val"]["dice"] == metrics["val"]["dice"]
    assert len(card["git"]["export"]["commit"] or "") == 40 or card["git"]["export"].get("note")
    assert card["file"]["bytes"] == out.stat().st_size and len(card["file"]["sha256"]) == 64


def test_bad_export_options_give_clear_errors(tiny_run, tmp_path, capsys):
    assert main(["export", "--ckpt", str(tiny_run), "--format", "onnx", "--output", str(tmp_path / "m.json")]) == 1
    assert "model card" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(tiny_run), "--format", "onnx", "--output", str(tmp_path / "m.onnx"),
                 "--size", "big"]) == 1
    assert "--size" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(tmp_path / "missing"), "--format", "onnx", "--output",
                 str(tmp_path / "m.onnx")]) == 1
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(tiny_run), "--format", "tflite", "--output", str(tmp_path / "m.tflite")])
    assert parse_size("48x64") == (48, 64) and parse_size(32) == (32, 32)


def _fresh(name: str, size: int = 64) -> LoadedTask:
    torch.manual_seed(0)
    task = SegmentationTask(model=name)
    return LoadedTask(task=task, checkpoint_path=Path(f"{name}.ckpt"), run_dir=None,
                      preprocessing=Preprocessing((size, size)), hparams={"model": name, "model_kwargs": {}})


def _params(fast: set[str]):
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in list_models()]


@pytest.mark.parametrize("name", _params(FAST_MODELS))
def test_every_registered_model_exports_to_onnx(name, tmp_path):
    import onnxruntime as ort

    out = tmp_path / f"{name}.onnx"
    card, _ = export_loaded(_fresh(name), "onnx", out)
    info = card["export"]
    assert info["max_abs_diff"] and all(v < TOL for v in info["max_abs_diff"].values())
    if info["spatial"] != "dynamic":  # a fixed-size fallback is stated, never silent
        assert info["notes"] and info["fixed_shape"][-2:] == [64, 64]
    if name == "lanet":  # max-unpool exports with dynamic sizes
        assert info["spatial"] == "dynamic"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = session.run(None, {"image": np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)})[0]
    assert y.shape == (1, 1, 64, 64) and 0.0 <= y.min() and y.max() <= 1.0


@pytest.mark.parametrize("name", _params({"simple_unet"}))
def test_every_registered_model_exports_to_torchscript(name, tmp_path):
    card, _ = export_loaded(_fresh(name), "torchscript", tmp_path / f"{name}.pt")
    info = card["export"]
    assert all(v < TOL for v in info["max_abs_diff"].values())
    if info["spatial"] != "dynamic":
        assert info["notes"]


@pytest.mark.parametrize("name", _params({"simple_unet", "lanet"}))
def test_every_registered_model_exports_to_safetensors(name, tmp_path):
    card, _ = export_loaded(_fresh(name), "safetensors", tmp_path / f"{name}.safetensors")
    assert card["export"]["max_abs_diff"]["reloaded model"] == 0.0


def test_export_failure_is_loud(tmp_path, monkeypatch):
    """An export that does not reproduce PyTorch raises (and leaves no file), it never passes silently."""
    import lesion_lightning.inference.onnx_export as export_mod

    real = export_mod._onnx_diffs
    monkeypatch.setattr(export_mod, "ONNX_TIERS", export_mod.ONNX_TIERS[:2])  # the fast exporter's tiers only
    monkeypatch.setattr(export_mod, "_onnx_diffs", lambda path, checks: ({k: 1.0 for k in real(path, checks)[0]}, []))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="does not reproduce PyTorch"):
        export_loaded(_fresh("simple_unet", 32), "onnx", out)
    assert not out.exists()


def test_export_output_defaults_under_results(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--ckpt", str(tiny_run), "--format", "safetensors"]) == 0
    expected = Path("results") / "export" / f"{tiny_run.name}.safetensors"
    assert (tmp_path / expected).is_file() and (tmp_path / expected.with_suffix(".json")).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing dropped in the working folder
    assert str(expected) in capsys.readouterr().out

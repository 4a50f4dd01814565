"""Published weights (weights/<name>.safetensors + model card): predict/cross-eval load them by file or name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.cli import main
from lesion_lightning.inference import CheckpointError, load_task
from lesion_lightning.inference import published
from lesion_lightning.paths import REPO_ROOT, sample_dataset_root

from tiny_run import fit_tiny_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, its last.ckpt exported as published weights `tiny_ham.safetensors`)."""
    base = tmp_path_factory.mktemp("published")
    run = fit_tiny_run(base)
    weights = base / "weights" / "tiny_ham.safetensors"
    assert main(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--format", "safetensors",
                 "--output", str(weights)]) == 0
    return run, weights


def _images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted((sample_dataset_root("ph2") or Path("/nonexistent")).rglob("*_Dermoscopic_Image/*.bmp"))[:2]:
        shutil.copyfile(p, folder / p.name)
    if not any(folder.iterdir()):
        pytest.skip("real ph2 sample not found")
    return folder


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_segmentation.png"))}


def test_export_writes_card_split_and_metrics_of_the_exported_checkpoint(exported):
    run, weights = exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["task"]["class_path"].endswith("SegmentationTask")
    assert card["task"]["init_args"]["model_kwargs"] == {"base_width": 4}
    assert weights.with_suffix(".split.json").read_bytes() == (run / "split.json").read_bytes()
    # metrics of the exported (last) checkpoint's epoch only
    assert card["metrics"]["val"]["epoch"] == card["checkpoint"]["epoch"]


def test_predict_with_published_file_and_name_equals_the_run(exported, tmp_path, monkeypatch):
    run, weights = exported
    images = _images(tmp_path)
    outs = {}
    monkeypatch.setattr(published, "WEIGHTS_DIR", weights.parent)
    for key, ckpt in (("run", str(run / "checkpoints" / "last.ckpt")), ("file", str(weights)), ("name", "tiny_ham")):
        outs[key] = tmp_path / key
        assert main(["predict", "--ckpt", ckpt, "--input", str(images), "--output", str(outs[key]), "--no-progress"]) == 0
    reference = _masks(outs["run"])
    assert len(reference) == 2
    for key in ("file", "name"):
        got = _masks(outs[key])
        assert got.keys() == reference.keys()
        assert all(np.array_equal(got[k], reference[k]) for k in reference)
    loaded = load_task(weights)
    assert loaded.preprocessing.image_size == (64, 64) and loaded.split_path == weights.with_suffix(".split.json")


def test_cross_eval_knows_the_training_images_of_published_weights(exported, tmp_path, capsys):
    run, weights = exported
    ham = sample_dataset_root("ham10000")
    rc = main(["cross-eval", "--ckpt", str(weights), "--datasets", "ham10000", "--data-roots", f"ham10000={ham}",
               "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "ce"), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    num_train = len(json.loads((run / "split.json").read_text())["subsets"]["train"])
    assert doc["training_set"]["num_seen"] == num_train > 0
    assert doc["results"][0]["overlap"]["num_shared"] == num_train


def test_tampered_or_cardless_weights_are_refused_naming_the_file(exported, tmp_path, capsys):
    _, weights = exported
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(weights, copy)
    card = json.loads(weights.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match="model card copy.json is missing"):
        load_task(copy)
    card["file"]["sha256"] = "0" * 64
    copy.with_suffix(".json").write_text(json.dumps(card))
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--ckpt", str(copy), "--input", str(image), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "copy.safetensors" in err and "SHA-256 differs" in err and "Traceback" not in err
    assert main(["predict", "--ckpt", "no_such_weights", "--input", str(image), "--output", str(tmp_path / "o")]) == 2
    assert "published" in capsys.readouterr().err


def test_repository_weights_load_with_their_cards():
    """Every file in weights/ has a card that rebuilds it (SHA-256, task, preprocessing, training split)."""
    names = published.published_names()
    if not names:
        pytest.skip(f"no published weights in {REPO_ROOT / 'weights'}")
    for name in names:
        loaded = load_task(name)
        card = loaded.card
        assert card["training_data"]["dataset"] and card["input"]["image_size"]
        assert loaded.split_path is not None and loaded.split_path.is_file(), name


def test_card_names_its_transform_set_and_older_cards_still_load(exported, tmp_path):
    """Cards name `normalisation.transform_set`; cards written before the rename call it `preset`."""
    _, weights = exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["input"]["normalisation"]["transform_set"] == "none" and "preset" not in card["input"]["normalisation"]
    copy = tmp_path / "legacy.safetensors"
    shutil.copyfile(weights, copy)
    card["input"]["normalisation"]["preset"] = card["input"]["normalisation"].pop("transform_set")
    copy.with_suffix(".json").write_text(json.dumps(card))
    assert load_task(copy).preprocessing.transform_set == "none"
    card["input"]["normalisation"]["preset"] = "nope"
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"legacy.json: .*normalisation.transform_set missing or unknown"):
        load_task(copy)

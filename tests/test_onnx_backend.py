"""predict and cross-eval through ONNX Runtime (issue 14): same masks and scores as eager, exported once, eager
fallback said in one line; cross-eval's extra pooled metrics (two-class mean IoU, Eq. 2 Dice) for tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.cli import main
from lesion_lightning.inference import onnx_export
from lesion_lightning.inference.export_checks import ExportError
from lesion_lightning.paths import sample_dataset_root

from tiny_run import fit_tiny_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("onnx_backend"))


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted((sample_dataset_root("ham10000") / "HAM10000_images_part_1").glob("*.jpg"))[:4]:
        shutil.copyfile(p, folder / p.name)
    return folder


def _predict(tiny_run, images, out: Path, backend: str, capsys, *extra: str) -> tuple[int, str]:
    rc = main(["predict", "--ckpt", str(tiny_run), "--input", str(images), "--output", str(out), "--no-progress",
               "--device", "cpu", "--backend", backend, *extra])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def _masks(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*_segmentation.png"))]


def test_onnx_masks_equal_eager_and_the_export_is_cached(tiny_run, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LESION_LIGHTNING_CACHE", str(tmp_path / "cache"))
    rc, out = _predict(tiny_run, images, tmp_path / "eager", "eager", capsys)
    assert rc == 0 and "backend eager PyTorch" in out
    rc, out = _predict(tiny_run, images, tmp_path / "onnx", "auto", capsys)
    assert rc == 0 and "backend ONNX Runtime" in out
    eager, onnx = _masks(tmp_path / "eager"), _masks(tmp_path / "onnx")
    assert len(eager) == len(onnx) == 4
    differ = sum(int((a != b).sum()) for a, b in zip(eager, onnx))
    assert differ / sum(a.size for a in eager) < 1e-4
    results = list((tmp_path / "cache" / "onnx").glob("*.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["verified"] is True

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    rc, out = _predict(tiny_run, images, tmp_path / "again", "onnx", capsys)
    assert rc == 0 and "backend ONNX Runtime" in out  # read from the cache


def test_failed_export_falls_back_in_one_line_and_is_remembered(tiny_run, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LESION_LIGHTNING_CACHE", str(tmp_path / "cache"))
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise ExportError("ONNX Runtime differs from PyTorch (max abs diff 0.5)")

    monkeypatch.setattr(onnx_export, "export_onnx", failing)
    rc, out = _predict(tiny_run, images, tmp_path / "a", "auto", capsys)
    assert rc == 0 and "backend eager PyTorch (ONNX Runtime not used: ExportError: ONNX Runtime differs" in out
    assert len(_masks(tmp_path / "a")) == 4
    rc, out = _predict(tiny_run, images, tmp_path / "b", "onnx", capsys)
    assert rc == 2 and "--backend onnx: this model cannot run through ONNX Runtime" in out and "Traceback" not in out
    assert calls == [1]  # the failed verification was remembered, not retried
    rc, out = _predict(tiny_run, images, tmp_path / "c", "onnx", capsys, "--tta")
    assert rc == 2 and "--backend onnx: --tta runs in PyTorch" in out


def test_cross_eval_scores_equal_through_both_backends(tiny_run, tmp_path, capsys):
    ham = sample_dataset_root("ham10000")
    scores = {}
    for backend in ("eager", "onnx"):
        rc = main(["cross-eval", "--ckpt", str(tiny_run), "--datasets", "ham10000", "--data-roots", f"ham10000={ham}",
                   "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / backend), "--json",
                   "--backend", backend])
        assert rc == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["backend"].startswith("ONNX Runtime" if backend == "onnx" else "eager PyTorch")
        scores[backend] = doc["results"][0]["headline"]["pooled"]["dice"]
    assert scores["onnx"] == pytest.approx(scores["eager"], abs=1e-4)
    assert "network in ONNX Runtime" in (tmp_path / "onnx" / "cross_eval.md").read_text()


def test_cross_eval_reports_two_class_mean_iou_from_its_counts(tiny_run, tmp_path, capsys):
    import csv

    ham = sample_dataset_root("ham10000")
    rc = main(["cross-eval", "--ckpt", str(tiny_run), "--datasets", "ham10000", "--data-roots", f"ham10000={ham}",
               "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "ce"), "--json", "--backend", "eager"])
    assert rc == 0
    pooled = json.loads(capsys.readouterr().out)["results"][0]["all"]["pooled"]
    rows = list(csv.DictReader(open(tmp_path / "ce" / "per_image_ham10000.csv")))
    tp, fp, tn, fn = (sum(int(r[k]) for r in rows) for k in ("tp", "fp", "tn", "fn"))
    assert pooled["mean_iou"] == pytest.approx((tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2, abs=1e-6)
    assert 0 < pooled["dice_eq2"] <= 1

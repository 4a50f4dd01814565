"""`lesion-lightning predict --ckpt` and lesion_lightning.inference on the real PH2 / ISIC 2017 / HAM10000 samples."""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lesion_lightning.cli import main
from lesion_lightning.inference import CheckpointError, load_predictor, load_task, resolve_checkpoint
from lesion_lightning.training.task import SegmentationTask

from tiny_run import fit_tiny_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real run folder from the training CLI: simple_unet (base width 4), 1 short epoch at 64x64."""
    run = fit_tiny_run(tmp_path_factory.mktemp("predict_run"))
    assert (run / "checkpoints" / "last.ckpt").exists()
    return run


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def test_predict_real_samples_writes_full_size_masks_overlays_and_csv(tiny_run, ph2_root, isic2017_root, tmp_path):
    isic_images = isic2017_root / "ISIC-2017_Test_v2_Data"
    out = tmp_path / "pred"
    # PH2 searched recursively: its IMDxxx_lesion.bmp masks must be left out of the inputs.
    rc = main(["predict", "--ckpt", str(tiny_run), "--input", str(ph2_root), str(isic_images), "--recursive",
               "--output", str(out), "--no-progress", "--batch-size", "3"])
    assert rc == 0
    inputs = sorted(p for p in ph2_root.rglob("IMD*.bmp") if not p.stem.endswith("_lesion")) + sorted(isic_images.glob("*.jpg"))
    assert len(inputs) >= 3
    rows = _csv_rows(out / "predictions.csv")
    assert set(rows) == {p.stem for p in inputs}
    for path in inputs:
        with Image.open(path) as im:
            w, h = im.size
        mask = np.asarray(Image.open(out / f"{path.stem}_segmentation.png"))
        assert mask.shape == (h, w), f"{path.name}: mask {mask.shape} != image {(h, w)}"
        assert set(np.unique(mask)) <= {0, 255}
        with Image.open(out / f"{path.stem}_overlay.png") as overlay:
            assert overlay.size == (w, h) and overlay.mode == "RGB"
        row = rows[path.stem]
        area = int((mask > 0).sum())
        assert (int(row["width"]), int(row["height"])) == (w, h)
        assert int(row["lesion_area_px"]) == area
        assert float(row["lesion_area_pct"]) == pytest.approx(100 * area / (w * h), abs=1e-3)
        assert float(row["equivalent_diameter_px"]) == pytest.approx(math.sqrt(4 * area / math.pi), abs=0.01)
        if area:
            ys, xs = np.nonzero(mask)
            assert (int(row["bbox_x"]), int(row["bbox_y"])) == (xs.min(), ys.min())
            assert (int(row["bbox_w"]), int(row["bbox_h"])) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert not (out / "skipped.csv").exists()


def test_corrupt_and_unreadable_files_are_skipped_and_reported(tiny_run, ham10000_root, tmp_path, capsys):
    good = sorted((ham10000_root / "HAM10000_images_part_1").glob("*.jpg"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "truncated.jpg").write_bytes(good[0].read_bytes()[:3000])
    (folder / "not_an_image.png").write_text("hello")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    rc = main(["predict", "--ckpt", str(tiny_run), "--input", str(folder), "--output", str(out), "--no-progress",
               "--batch-size", "2"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "truncated.jpg" in captured.err and "not_an_image.png" in captured.err
    assert "predicted 2 image(s), skipped 2 bad file(s)" in captured.out
    skipped = (out / "skipped.csv").read_text()
    assert "truncated.jpg" in skipped and "not_an_image.png" in skipped
    assert set(_csv_rows(out / "predictions.csv")) == {p.stem for p in good}
    for p in good:
        assert (out / f"{p.stem}_segmentation.png").exists()

    # nothing predictable at all: non-zero exit, still no traceback
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    assert main(["predict", "--ckpt", str(tiny_run), "--input", str(only_bad), "--output", str(tmp_path / "o2"),
                 "--no-progress"]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_gt_contour_drawn_in_red_and_scores_in_csv(tiny_run, isic2017_root, tmp_path):
    image = sorted((isic2017_root / "ISIC-2017_Test_v2_Data").glob("*.jpg"))[0]
    gt_dir = isic2017_root / "ISIC-2017_Test_v2_Part1_GroundTruth"
    with_gt, without_gt = tmp_path / "gt", tmp_path / "nogt"
    assert main(["predict", "--ckpt", str(tiny_run), "--input", str(image), "--output", str(with_gt), "--gt",
                 str(gt_dir), "--no-progress"]) == 0
    assert main(["predict", "--ckpt", str(tiny_run), "--input", str(image), "--output", str(without_gt),
                 "--no-progress"]) == 0

    def pure(path: Path, rgb: tuple[int, int, int]) -> int:
        arr = np.asarray(Image.open(path).convert("RGB"))
        return int(np.all(arr == np.array(rgb, np.uint8), axis=-1).sum())

    name = f"{image.stem}_overlay.png"
    assert pure(with_gt / name, (255, 0, 0)) > 1000  # the GT outline of a full-size ISIC lesion
    assert pure(without_gt / name, (255, 0, 0)) < pure(with_gt / name, (255, 0, 0)) / 10
    row = _csv_rows(with_gt / "predictions.csv")[image.stem]
    assert 0.0 <= float(row["dice"]) <= 1.0 and 0.0 <= float(row["iou"]) <= float(row["dice"]) + 1e-9


def test_inference_api_full_resolution_probabilities_and_tta(tiny_run, ph2_root):
    from lesion_lightning.data.io import load_image

    ckpt, run_dir = resolve_checkpoint(tiny_run)
    assert ckpt.name.startswith("best") and run_dir == tiny_run
    predictor = load_predictor(tiny_run)
    assert predictor.preprocessing.image_size == (64, 64) and predictor.preprocessing.transform_set == "none"
    image = load_image(next(p for p in sorted(ph2_root.rglob("IMD*.bmp")) if not p.stem.endswith("_lesion")))
    probs = predictor.predict_probabilities([image])[0]
    assert probs.shape == image.shape[:2] and probs.dtype == np.float32
    assert 0.0 <= probs.min() <= probs.max() <= 1.0
    # TTA on the same last.ckpt works and also returns full-size maps
    tta = load_predictor(tiny_run / "checkpoints" / "last.ckpt", tta=True, threshold=0.3)
    assert tta.threshold == 0.3
    assert tta.predict_masks([image])[0].shape == image.shape[:2]


def test_bad_checkpoint_arguments_name_the_path(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="nope"):
        resolve_checkpoint(tmp_path / "nope")
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_checkpoint(empty)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        load_task(junk)
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--ckpt", str(junk), "--input", str(image), "--output", str(tmp_path / "o")]) == 2
    assert "junk.ckpt" in capsys.readouterr().err


def _write_subclass_module(folder: Path) -> None:
    (folder / "custom_task_for_tests.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from lesion_lightning.training.task import SegmentationTask

        class ExtraHeadTask(SegmentationTask):
            """A SegmentationTask subclass with its own constructor argument and extra weights."""

            def __init__(self, extra_width: int = 3, **kwargs):
                super().__init__(**kwargs)
                self.save_hyperparameters()
                self.extra = nn.Linear(extra_width, 1)

        class Opaque:
            pass
    '''))


def test_any_segmentation_task_subclass_loads_and_untrusted_pickles_are_refused(tmp_path, monkeypatch):
    _write_subclass_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import custom_task_for_tests as mod

    torch.manual_seed(0)
    task = mod.ExtraHeadTask(extra_width=5, model="simple_unet", model_kwargs={"base_width": 4})
    hparams = {**dict(task.hparams), "_class_path": "custom_task_for_tests.ExtraHeadTask"}
    ckpt = tmp_path / "sub.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams,
                "datamodule_hyper_parameters": {"image_size": [48, 64], "augment": "slsnet"}}, ckpt)
    loaded = load_task(ckpt)
    assert type(loaded.task).__name__ == "ExtraHeadTask" and isinstance(loaded.task, SegmentationTask)
    assert torch.equal(loaded.task.extra.weight, task.extra.weight)
    assert loaded.preprocessing.image_size == (48, 64) and loaded.preprocessing.transform_set == "slsnet"

    # a class that is not a SegmentationTask is refused by name
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "custom_task_for_tests.Opaque"}}, tmp_path / "o.ckpt")
    with pytest.raises(CheckpointError, match="not a subclass of SegmentationTask"):
        load_task(tmp_path / "o.ckpt")

    # an arbitrary pickled object: refused by weights_only loading unless trusted
    evil = tmp_path / "opaque.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams, "payload": mod.Opaque()}, evil)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_task(evil)
    assert isinstance(load_task(evil, trust_checkpoint=True).task, mod.ExtraHeadTask)


def test_adversarial_task_checkpoint_loads_for_prediction(tmp_path, ph2_root):
    adversarial = pytest.importorskip("lesion_lightning.training.adversarial")
    from lesion_lightning.data.io import load_image

    torch.manual_seed(0)
    task = adversarial.AdversarialSegmentationTask(model="simple_unet", model_kwargs={"base_width": 4},
                                                   discriminator_kwargs={"base_width": 4})
    ckpt = tmp_path / "adv.ckpt"
    torch.save({"state_dict": task.state_dict(),
                "hyper_parameters": {**dict(task.hparams),
                                     "_class_path": "lesion_lightning.training.adversarial.AdversarialSegmentationTask"},
                "datamodule_hyper_parameters": {"image_size": 64, "augment": "slsnet"}}, ckpt)
    predictor = load_predictor(ckpt)
    assert type(predictor.task).__name__ == "AdversarialSegmentationTask"
    assert predictor.preprocessing.transform_set == "slsnet"
    image = load_image(next(p for p in sorted(ph2_root.rglob("IMD*.bmp")) if not p.stem.endswith("_lesion")))
    assert predictor.predict_masks([image])[0].shape == image.shape[:2]


def _tie_checkpoint(path: Path) -> Path:
    """simple_unet with every parameter zero: its logit is 0, so every probability is exactly the 0.5 threshold."""
    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 4})
    with torch.no_grad():
        for p in task.parameters():
            p.zero_()
    hparams = {**dict(task.hparams), "_class_path": "lesion_lightning.training.task.SegmentationTask"}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams,
                "datamodule_hyper_parameters": {"image_size": 64, "augment": "none"}}, path)
    return path


def test_saved_masks_and_metrics_agree_at_the_threshold(tmp_path, capsys):
    """One binarize rule: at probabilities equal to the threshold, `predict`'s saved masks, its CSV, `evaluate`
    on those masks and `SegmentationMetrics` on the probabilities give the same Dice."""
    from lesion_lightning.metrics import SegmentationMetrics

    ckpt = _tie_checkpoint(tmp_path / "tie.ckpt")
    images, gts = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gts.mkdir()
    rng = np.random.default_rng(0)
    gt = np.zeros((64, 64), np.uint8)
    gt[16:40, 20:50] = 255
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / "case1.png")
    Image.fromarray(gt).save(gts / "case1_segmentation.png")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(images), "--output", str(out), "--gt", str(gts),
                 "--no-progress", "--device", "cpu"]) == 0
    predictor = load_predictor(ckpt, device="cpu")
    probs = predictor.predict_probabilities([np.asarray(Image.open(images / "case1.png"))])[0]
    assert np.all(probs == predictor.threshold)  # every pixel is a tie
    metric = SegmentationMetrics(threshold=predictor.threshold)
    metric.update(torch.from_numpy(probs)[None], torch.from_numpy(gt > 0)[None].long())
    dice = float(metric.compute()["dice"])
    saved = np.asarray(Image.open(out / "case1_segmentation.png")) > 0
    assert np.array_equal(saved, predictor.predict_masks([np.asarray(Image.open(images / "case1.png"))])[0] > 0)
    assert float(_csv_rows(out / "predictions.csv")["case1"]["dice"]) == pytest.approx(dice)
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(out), "--gt", str(gts), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pooled"]["dice"] == pytest.approx(dice)


def _flat_isic_folder(ham10000_root: Path, folder: Path, n: int = 3) -> tuple[list[Path], list[Path]]:
    """A flat ISIC-style folder: n images beside their `_segmentation.png` masks."""
    folder.mkdir()
    images = sorted((ham10000_root / "HAM10000_images_part_1").glob("*.jpg"))[:n]
    masks_src = ham10000_root / "HAM10000_segmentations_lesion_tschandl"
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
        (folder / f"{p.stem}_segmentation.png").write_bytes((masks_src / f"{p.stem}_segmentation.png").read_bytes())
    return sorted(folder.glob("*.jpg")), sorted(folder.glob("*_segmentation.png"))


def test_predict_never_writes_into_its_inputs_nor_over_existing_files(tiny_run, ham10000_root, tmp_path, capsys):
    images, masks = _flat_isic_folder(ham10000_root, tmp_path / "isic")
    before = {p: p.read_bytes() for p in masks}
    # --output equal to the input folder, or above it: refused, the ground truth untouched
    for output in (tmp_path / "isic", tmp_path):
        rc = main(["predict", "--ckpt", str(tiny_run), "--input", str(tmp_path / "isic"), "--output", str(output),
                   "--no-progress", "--overwrite"])
        assert rc == 2 and "holds input files" in capsys.readouterr().err
    # the ground-truth folder inside --output counts as an input too
    rc = main(["predict", "--ckpt", str(tiny_run), "--input", str(images[0]), "--gt", str(tmp_path / "isic"),
               "--output", str(tmp_path), "--no-progress"])
    assert rc == 2 and "holds input files" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in masks} == before
    # a second run into the same folder: refused without --overwrite, nothing replaced
    out = tmp_path / "pred"
    argv = ["predict", "--ckpt", str(tiny_run), "--input", str(images[0]), "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    written = out / f"{images[0].stem}_segmentation.png"
    written.write_bytes(b"a file predict did not create")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and written.name in err
    assert written.read_bytes() == b"a file predict did not create"
    assert main([*argv, "--overwrite"]) == 0 and written.read_bytes().startswith(b"\x89PNG")


def test_predict_on_a_flat_folder_of_images_and_masks_predicts_the_images_only(tiny_run, ham10000_root, tmp_path,
                                                                              capsys):
    images, masks = _flat_isic_folder(ham10000_root, tmp_path / "isic")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(tiny_run), "--input", str(tmp_path / "isic"), "--output", str(out),
                 "--gt", str(tmp_path / "isic"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"left out {len(masks)} mask file(s)" in captured.err and f"predicted {len(images)} image(s)" in captured.out
    rows = _csv_rows(out / "predictions.csv")
    assert set(rows) == {p.stem for p in images}  # no prediction of a mask, and each image found its mask
    assert all(row["dice"] != "" for row in rows.values())
    assert sorted(out.glob("*_segmentation.png")) == sorted(out / f"{p.stem}_segmentation.png" for p in images)


def test_mask_statistics_report_the_largest_component_beside_the_totals():
    from lesion_lightning.inference.images import mask_statistics

    mask = np.zeros((100, 120), np.uint8)
    mask[40:60, 50:80] = 1  # the lesion, 20 x 30
    mask[2, 3] = 1  # stray blobs far away
    mask[95:97, 110:112] = 1
    stats = mask_statistics(mask)
    assert stats["lesion_area_px"] == 600 + 1 + 4 and stats["components"] == 3
    assert (stats["bbox_x"], stats["bbox_y"], stats["bbox_w"], stats["bbox_h"]) == (3, 2, 109, 95)
    assert stats["largest_area_px"] == 600
    assert (stats["largest_bbox_x"], stats["largest_bbox_y"], stats["largest_bbox_w"], stats["largest_bbox_h"]) == (
        50, 40, 30, 20)
    empty = mask_statistics(np.zeros((4, 4), np.uint8))
    assert empty["components"] == 0 and empty["largest_area_px"] == ""


def test_predict_help_shows_the_image_form(capsys):
    """`predict --help` and `lesion-lightning --help` show the README's --ckpt/--input/--output form."""
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lesion-lightning predict") and "--ckpt RUN_OR_CKPT" in out and "--input" in out
    assert len(out.splitlines()) < 60  # not LightningCLI's 300-line help
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "predict --ckpt RUN_OR_CKPT --input FILE_OR_DIR --output DIR" in " ".join(capsys.readouterr().out.split())

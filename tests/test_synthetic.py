"""Synthetic dermoscopy generator: plausible images, exact masks, official layouts, determinism."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import argparse

from lesion_lightning.cli import COMMANDS
from lesion_lightning.commands import synthetic as synthetic_command
from lesion_lightning.data.io import load_image, load_mask
from lesion_lightning.data.synthetic import ISIC2017_FOLDERS, ISIC2018_FOLDERS, make_sample, write_dataset


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("size", [(192, 256), (97, 61)])
def test_make_sample_types_and_lesion(size):
    image, mask = make_sample(np.random.default_rng(3), size)
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    assert mask.shape == size and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert 0.01 < mask.mean() < 0.6
    # The lesion is darker than the skin right around it (a ring outside the mask, away from the dark rim).
    ring = cv2.dilate(mask, np.ones((9, 9), np.uint8)) - mask
    gray = image.mean(axis=2)
    assert gray[mask == 1].mean() < gray[ring == 1].mean() - 10


def test_make_sample_deterministic_and_varied():
    a = make_sample(np.random.default_rng(7), (64, 80))
    b = make_sample(np.random.default_rng(7), (64, 80))
    c = make_sample(np.random.default_rng(8), (64, 80))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_vignetting_darkens_corners():
    corners, centres = [], []
    for seed in range(6):
        image, _ = make_sample(np.random.default_rng(seed), (128, 128))
        corners.append(image[:4, :4].mean())
        centres.append(image[60:68, :8].mean())  # left edge middle: skin, inside the field of view
    assert np.mean(corners) < 0.6 * np.mean(centres)


def test_make_sample_is_fast():
    rng = np.random.default_rng(0)
    make_sample(rng, (256, 256))
    start = time.perf_counter()
    for _ in range(10):
        make_sample(rng, (256, 256))
    # a few ms on a quiet core; generous bound for a loaded CI machine
    assert (time.perf_counter() - start) / 10 < 0.1


def test_isic2018_layout(tmp_path):
    root = write_dataset(tmp_path / "isic", "isic2018", seed=1, image_size=(48, 64),
                         subsets={"train": 3, "val": 2, "test": 1})
    ids = []
    for subset, n in (("train", 3), ("val", 2), ("test", 1)):
        img_dir, gt_dir = (root / f for f in ISIC2018_FOLDERS[subset])
        images = sorted(img_dir.glob("ISIC_*.jpg"))
        assert len(images) == n and (img_dir / "LICENSE.txt").is_file() and (gt_dir / "ATTRIBUTION.txt").is_file()
        for p in images:
            gt = gt_dir / f"{p.stem}_segmentation.png"
            assert Image.open(gt).mode == "L" and set(np.unique(np.asarray(Image.open(gt)))) <= {0, 255}
            assert load_image(p).shape == (48, 64, 3)
            assert load_mask(gt, expected_hw=(48, 64)).any()
            ids.append(p.stem)
    assert len(set(ids)) == 6 and all(len(i) == len("ISIC_0000000") for i in ids)


def test_isic2017_layout_has_superpixels(tmp_path):
    root = write_dataset(tmp_path / "isic17", "isic2017", seed=0, image_size=(32, 40), subsets={"train": 2, "test": 1})
    train_dir = root / ISIC2017_FOLDERS["train"][0]
    assert len(list(train_dir.glob("ISIC_???????.jpg"))) == 2
    assert len(list(train_dir.glob("*_superpixels.png"))) == 2
    assert (root / ISIC2017_FOLDERS["test"][1]).is_dir()
    assert not (root / ISIC2017_FOLDERS["val"][0]).exists()


def test_ham10000_layout_groups_images_by_lesion(tmp_path):
    root = write_dataset(tmp_path / "ham", "ham10000", 12, seed=2, image_size=(45, 60))
    with open(root / "HAM10000_metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert len(rows) == 12
    lesions = {r["lesion_id"] for r in rows}
    assert len(lesions) < 12  # several images per lesion, as in the real dataset
    part1 = {p.stem for p in (root / "HAM10000_images_part_1").glob("*.jpg")}
    part2 = {p.stem for p in (root / "HAM10000_images_part_2").glob("*.jpg")}
    assert part1 and part2 and part1 | part2 == {r["image_id"] for r in rows}
    for r in rows:
        assert (root / "HAM10000_segmentations_lesion_tschandl" / f"{r['image_id']}_segmentation.png").is_file()
    # images of one lesion share its shape: their masks are identical
    by_lesion: dict[str, list[str]] = {}
    for r in rows:
        by_lesion.setdefault(r["lesion_id"], []).append(r["image_id"])
    pair = next(v for v in by_lesion.values() if len(v) > 1)
    seg = root / "HAM10000_segmentations_lesion_tschandl"
    np.testing.assert_array_equal(load_mask(seg / f"{pair[0]}_segmentation.png"),
                                  load_mask(seg / f"{pair[1]}_segmentation.png"))


def test_ph2_layout(tmp_path):
    root = write_dataset(tmp_path / "ph2", "ph2", 5, seed=0, image_size=(60, 80))
    cases = sorted((root / "PH2Dataset" / "PH2 Dataset images").iterdir())
    assert len(cases) == 5
    sizes = set()
    for case in cases:
        image_path = case / f"{case.name}_Dermoscopic_Image" / f"{case.name}.bmp"
        mask_path = case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp"
        assert Image.open(mask_path).mode == "1"
        image = load_image(image_path)
        assert load_mask(mask_path, expected_hw=image.shape[:2]).any()
        sizes.add(image.shape[:2])
    assert len(sizes) > 1 and all(58 <= h <= 60 and 78 <= w <= 80 for h, w in sizes)
    lines = (root / "PH2Dataset" / "PH2_dataset.txt").read_bytes().decode().split("\r\n")
    assert lines[0] == "Name\tClinical Diagnosis\tAsymmetry"
    assert [ln.split("\t")[0] for ln in lines[1:6]] == [c.name for c in cases]


def test_folder_layout(tmp_path):
    root = write_dataset(tmp_path / "f", "folder", 3, image_size=(32, 32))
    assert sorted(p.name for p in (root / "masks").iterdir()) == [f"img_{i:04d}_segmentation.png" for i in range(3)]


def test_write_dataset_deterministic_and_prefix_stable(tmp_path):
    a = _tree_digest(write_dataset(tmp_path / "a", "isic2018", 3, seed=5, image_size=(32, 48)))
    b = _tree_digest(write_dataset(tmp_path / "b", "isic2018", 3, seed=5, image_size=(32, 48)))
    c = _tree_digest(write_dataset(tmp_path / "c", "isic2018", 4, seed=5, image_size=(32, 48)))
    d = _tree_digest(write_dataset(tmp_path / "d", "isic2018", 3, seed=6, image_size=(32, 48)))
    assert a == b
    assert all(c[k] == v for k, v in a.items())  # image i does not depend on num_images
    assert a != d


def test_write_dataset_bad_options(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        write_dataset(tmp_path, "isic2019")
    with pytest.raises(ValueError, match="subsets"):
        write_dataset(tmp_path, "ph2", subsets={"train": 2})
    with pytest.raises(ValueError, match="subsets"):
        write_dataset(tmp_path, "isic2018", subsets={"training": 2})


def _cli(argv: list[str]) -> int:
    # The command module directly (the full CLI parser imports every command, torch included).
    assert COMMANDS["synthetic"][0] == "synthetic"
    parser = argparse.ArgumentParser()
    synthetic_command.configure(parser)
    return synthetic_command.run(parser.parse_args(argv))


def test_synthetic_command(tmp_path, capsys):
    main = _cli
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--num-images", "2", "--size", "32", "40", "--seed", "3"]) == 0
    assert "wrote 2" in capsys.readouterr().out
    images = sorted((out / ISIC2018_FOLDERS["train"][0]).glob("*.jpg"))
    assert len(images) == 2 and load_image(images[0]).shape == (32, 40, 3)
    assert main(["--out", str(out), "--layout", "ph2", "--subsets", "train=2"]) == 2
    assert "no official subsets" in capsys.readouterr().err

"""The `folder` layout for redistributions: subsets, a metadata CSV for grouping, JPEG and 0/1 masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.data.checks import check_dataset
from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.readers import detect_layout, read_dataset, scan_dataset
from lesion_lightning.data.splits import make_split
from lesion_lightning.data.synthetic import make_sample


def _pairs(image_dir, mask_dir, ids, *, mask_name="{id}_mask.png", jpeg_mask=False, seed=0, image_name="{id}.jpg"):
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    masks = {}
    for k, i in enumerate(ids):
        image, mask = make_sample(np.random.default_rng([seed, k]), (48, 64))
        Image.fromarray(image).save(image_dir / image_name.format(id=i), quality=90)
        out = Image.fromarray(mask * 255)
        out.save(mask_dir / mask_name.format(id=i), **({"quality": 75} if jpeg_mask else {}))
        masks[i] = mask
    return masks


def test_train_val_test_subfolders_are_found(tmp_path):
    root = tmp_path / "redistribution"
    for n, subset in enumerate(("train", "val", "test")):
        _pairs(root / subset / "images", root / subset / "masks", [f"{subset}_{k}" for k in range(3 + n)],
               seed=n)
    assert detect_layout(root) == "folder"
    records = read_dataset("folder", root, mask_pattern="{id}_mask.png")
    assert {s: sum(r.subset == s for r in records) for s in ("train", "val", "test")} == {"train": 3, "val": 4,
                                                                                         "test": 5}
    assert all(r.mask_path is not None and r.mask_path.parent.parent.name == r.subset for r in records)
    assert [r.subset for r in read_dataset("folder", root, mask_pattern="{id}_mask.png", subsets=["val"])] == \
        ["val"] * 4
    assert make_split(records, "official").sizes() == {"train": 3, "val": 4, "test": 5}
    with pytest.raises(ValueError, match="no official subsets"):
        read_dataset("folder", tmp_path / "redistribution" / "train", mask_pattern="{id}_mask.png", subsets=["val"])


def test_subset_dirs_pairs_and_jpeg_masks(tmp_path):
    root = tmp_path / "isic2017_256"
    truth = _pairs(root / "trainx", root / "trainy", ["a1", "a2", "a3"], mask_name="{id}.jpg", jpeg_mask=True)
    truth |= _pairs(root / "testx", root / "testy", ["b1", "b2"], mask_name="{id}.jpg", jpeg_mask=True, seed=1)
    options = {"subset_dirs": {"train": ["trainx", "trainy"], "test": ["testx", "testy"]}, "mask_pattern": "{id}.jpg"}
    scan = scan_dataset("folder", root, **options)
    assert [(r.id, r.subset, r.mask_encoding) for r in scan.records] == [
        ("a1", "train", "threshold"), ("a2", "train", "threshold"), ("a3", "train", "threshold"),
        ("b1", "test", "threshold"), ("b2", "test", "threshold")]
    assert check_dataset("folder", root, **options).ok  # JPEG masks are not "not binary"
    dm = LesionDataModule(dataset="folder", root=str(root), split="official", image_size=[48, 64], batch_size=5,
                          cache=str(tmp_path / "cache"), reader_options=options)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    for i, mask in zip(batch["id"], batch["mask"][:, 0].numpy()):
        agreement = (mask == truth[i]).mean()
        assert agreement > 0.99, (i, agreement)  # JPEG noise only moves a few border pixels across 127
    with pytest.raises(ValueError, match="subset_dirs"):
        read_dataset("folder", root, subset_dirs={"training": "trainx"})


def test_image_pattern_and_ids_repeated_across_subsets(tmp_path):
    """The ISIC 2017 redistribution as it is: trainx/imgx1.jpg pairs with trainy/imgy1.jpg, and imgx1 is a
    different image in every subset."""
    root = tmp_path / "isic2017_256"
    named = {"image_name": "imgx{id}.jpg", "mask_name": "imgy{id}.jpg", "jpeg_mask": True}
    truth = {f"train-{k}": m for k, m in _pairs(root / "trainx", root / "trainy", ["1", "2", "3"], **named).items()}
    truth |= {f"test-{k}": m for k, m in _pairs(root / "testx", root / "testy", ["1", "2"], seed=1, **named).items()}
    options = {"subset_dirs": {"train": ["trainx", "trainy"], "test": ["testx", "testy"]},
               "image_pattern": "imgx{id}.jpg", "mask_pattern": "imgy{id}.jpg"}
    # without ids_per_subset the repeated ids are refused, naming the file and the option
    problems = scan_dataset("folder", root, **options).problems
    assert len(problems) == 2 and all("ids_per_subset" in p.problem for p in problems)
    assert problems[0].file == str(root / "testx" / "imgx1.jpg")
    scan = scan_dataset("folder", root, ids_per_subset=True, **options)
    assert not scan.problems
    assert [(r.id, r.subset, r.image_path.parent.name, r.mask_path.relative_to(root).as_posix())
            for r in scan.records] == [
        ("test-1", "test", "testx", "testy/imgy1.jpg"), ("test-2", "test", "testx", "testy/imgy2.jpg"),
        ("train-1", "train", "trainx", "trainy/imgy1.jpg"), ("train-2", "train", "trainx", "trainy/imgy2.jpg"),
        ("train-3", "train", "trainx", "trainy/imgy3.jpg")]
    dm = LesionDataModule(dataset="folder", root=str(root), split="official", image_size=[48, 64], batch_size=5,
                          cache=str(tmp_path / "cache"), reader_options={**options, "ids_per_subset": True})
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert sorted(batch["id"]) == ["test-1", "test-2"]
    for i, mask in zip(batch["id"], batch["mask"][:, 0].numpy()):
        assert (mask == truth[i]).mean() > 0.99, i  # each test image with its own mask, not train's imgy1
    (root / "trainx" / "notes.png").write_bytes((root / "trainx" / "imgx1.jpg").read_bytes())
    assert any("image pattern" in w.problem for w in scan_dataset("folder", root, ids_per_subset=True, **options).warnings)


def test_metadata_csv_groups_images_of_one_lesion(tmp_path):
    root = tmp_path / "ham_small"
    ids = [f"ISIC_{k:07d}" for k in range(20)]
    _pairs(root / "images", root / "masks", ids, mask_name="{id}_segmentation.png")
    rows = ["image_id,lesion_id,dx"] + [f"{i},HAM_{k // 4:07d},nv" for k, i in enumerate(ids)]  # 4 images per lesion
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    options = {"metadata": "meta.csv", "group_column": "lesion_id"}
    records = read_dataset("folder", root, **options)
    assert records[5].group == "HAM_0000001" and records[5].metadata["dx"] == "nv"
    manifest = make_split(records, "80-10-10", seed=3)
    subset_of = {i: s for s, v in manifest.subsets.items() for i in v}
    for lesion in {r.group for r in records}:
        assert len({subset_of[r.id] for r in records if r.group == lesion}) == 1
    with pytest.raises(DataError, match="lesion_id") as exc:
        read_dataset("folder", root, metadata="meta.csv", group_column="lesion_id", id_column="isic_id")
    assert exc.value.file == str(root / "meta.csv")
    with pytest.raises(ValueError, match="group_column: needs the metadata option"):
        read_dataset("folder", root, group_column="lesion_id")
    with pytest.raises(DataError, match="metadata file not found"):
        read_dataset("folder", root, metadata="absent.csv")


def test_declared_zero_one_masks_that_are_lesion_everywhere(tmp_path):
    root = tmp_path / "zero_one"
    _pairs(root / "images", root / "masks", ["x"])
    Image.fromarray(np.ones((48, 64), np.uint8)).save(root / "masks" / "x_segmentation.png")
    for encoding in ("auto", "0/1"):
        records = read_dataset("folder", root, mask_encoding=encoding)
        assert records[0].mask_encoding == encoding
    report = check_dataset("folder", root, mask_encoding="0/1")
    assert any("covers the whole image" in w.problem for w in report.warnings), report.warnings
    assert not any("empty mask" in w.problem for w in report.warnings)
    with pytest.raises(ValueError, match="mask_encoding"):
        read_dataset("folder", root, mask_encoding="binary")


def test_check_data_takes_any_reader_option(tmp_path, capsys):
    from lesion_lightning.cli import main

    root = tmp_path / "isic2017_256"
    named = {"image_name": "imgx{id}.jpg", "mask_name": "imgy{id}.jpg", "jpeg_mask": True}
    _pairs(root / "trainx", root / "trainy", ["1", "2"], **named)
    _pairs(root / "testx", root / "testy", ["1"], seed=1, **named)
    options = ("{subset_dirs: {train: [trainx, trainy], test: [testx, testy]}, image_pattern: 'imgx{id}.jpg', "
               "mask_pattern: 'imgy{id}.jpg', ids_per_subset: true}")
    assert main(["check-data", "--dataset", "folder", "--root", str(root), "--reader-options", options, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_pairs"] == 3
    for bad, message in (("[1, 2]", "expected a mapping"), ("{a: [", "not YAML"), ("{colour: red}", "colour")):
        assert main(["check-data", "--dataset", "folder", "--root", str(root), "--reader-options", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

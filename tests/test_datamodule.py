"""LesionDataModule: loaders, manifests (write, reuse, refuse), bad data (error/skip), default data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lesion_lightning.data import datamodule as dm_module
from lesion_lightning.data.dataset import LesionDataset
from lesion_lightning.data.datasets import get_dataset_spec
from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.readers import read_dataset
from lesion_lightning.data.splits import make_split
from lesion_lightning.data.synthetic import write_dataset


def _dm(root, tmp_path, **kwargs) -> LesionDataModule:
    opts = dict(dataset="ham10000", root=str(root), image_size=32, batch_size=4, cache=str(tmp_path / "cache"))
    opts.update(kwargs)
    return LesionDataModule(**opts)


def test_real_ham10000_loaders_and_manifest(tmp_path, ham10000_root):
    dm = _dm(ham10000_root, tmp_path)
    dm.setup("fit")
    assert dm.manifest.sizes() == {"train": 24, "val": 3, "test": 3}
    expected = make_split(read_dataset("ham10000", ham10000_root), "80-10-10", seed=42, dataset="ham10000")
    assert dm.manifest.subsets == expected.subsets

    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, 32, 32) and batch["mask"].dtype == torch.float32
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0} and batch["mask"].sum() > 0
    assert set(batch["id"]) <= set(dm.manifest.subsets["train"])
    assert len(dm.train_dataloader()) == 6 and dm.train_dataloader().drop_last
    val_ids = [i for b in dm.val_dataloader() for i in b["id"]]
    assert sorted(val_ids) == dm.manifest.subsets["val"]
    assert len(dm.test_dataloader().dataset) == 3 and len(dm.predict_dataloader().dataset) == 3

    # the same epoch gives the same order; another epoch another order (resumable shuffling)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    first = list(loader.sampler)
    assert list(loader.sampler) == first
    loader.sampler.set_epoch(2)
    assert list(loader.sampler) != first

    path = dm.save_manifest(tmp_path / "run" / "split.json")
    assert json.loads(path.read_text())["subsets"] == dm.manifest.subsets
    assert (tmp_path / "cache" / "decoded").is_dir()  # decode-once cache in use


def test_manifest_is_reused_and_a_foreign_one_refused(tmp_path, ham10000_root):
    first = _dm(ham10000_root, tmp_path, split="kfold", fold=2)
    first.setup()
    assert first.manifest.sizes() == {"train": 24, "val": 6}
    path = first.save_manifest(tmp_path / "split.json")

    reused = _dm(ham10000_root, tmp_path, split=str(path), seed=999)
    reused.setup()
    assert reused.manifest.subsets == first.manifest.subsets

    data = json.loads(path.read_text())
    data["subsets"]["val"][0] = "ISIC_0000000"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="ISIC_0000000") as exc:
        _dm(ham10000_root, tmp_path, split=str(path)).setup()
    assert str(path) in str(exc.value)


def test_bad_samples_stop_setup_or_are_skipped(tmp_path):
    root = write_dataset(tmp_path / "ham", "ham10000", num_images=12, image_size=(32, 40))
    masks = root / "HAM10000_segmentations_lesion_tschandl"
    small = masks / "ISIC_0024307_segmentation.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    grey = masks / "ISIC_0024310_segmentation.png"
    Image.fromarray(np.arange(32 * 40, dtype=np.uint32).reshape(32, 40).astype(np.uint8)).save(grey)
    (masks / "ISIC_0024312_segmentation.png").unlink()

    with pytest.raises(DataError) as exc:
        _dm(root, tmp_path).setup("fit")
    message = str(exc.value)
    assert "3 of the 12 images" in message
    for text in (str(small), "mask size 10x10 != image size 40x32", str(grey), "not binary", "ISIC_0024312.jpg",
                 "missing mask", "on_bad_sample=skip"):
        assert text in message

    dm = _dm(root, tmp_path, on_bad_sample="skip")
    with pytest.warns(UserWarning, match="skipped 3 of 12"):
        dm.setup("fit")
    used = set(dm.manifest.ids)
    assert len(used) == 9 and not used & {"ISIC_0024307", "ISIC_0024310", "ISIC_0024312"}
    assert len(dm.skipped) == 3
    assert sum(len(dm.datasets[s]) for s in ("train", "val", "test")) == 9


def test_default_data_real_sample_or_synthetic(tmp_path, monkeypatch, ph2_root):
    dm = LesionDataModule(dataset="ph2", root=None, image_size=32, cache=str(tmp_path / "cache"))
    assert dm.resolve_root() == ph2_root

    monkeypatch.setattr(dm_module, "sample_dataset_root", lambda name: None)
    dm = LesionDataModule(dataset="isic2018", root=None, image_size=32, batch_size=4, cache=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    root = dm.dataset_root
    assert root.parent == tmp_path / "cache" / "synthetic" and (root / ".complete").exists()
    n = sum(get_dataset_spec("isic2018").synthetic_images.values())
    assert len(dm.manifest.ids) == n and all(dm.manifest.sizes().values())
    assert next(iter(dm.val_dataloader()))["image"].shape[-2:] == (32, 32)
    stamp = (root / ".complete").stat().st_mtime_ns
    again = LesionDataModule(dataset="isic2018", root=None, cache=str(tmp_path / "cache"))
    assert again.resolve_root() == root and (root / ".complete").stat().st_mtime_ns == stamp  # generated once


def test_empty_subset_names_the_split(tmp_path, isic2017_root):
    dm = _dm(isic2017_root, tmp_path, dataset="isic2017", image_size=16)
    dm.setup("fit")
    assert dm.manifest.sizes() == {"train": 2, "val": 0, "test": 0}
    with pytest.raises(DataError, match="split '80-10-10' of isic2017 has no 'val' images"):
        dm.val_dataloader()
    with pytest.raises(ValueError, match=r"pool: subset\(s\) \['train'\] not in the dataset"):
        _dm(isic2017_root, tmp_path, dataset="isic2017", split="70-30", pool=["train"]).setup()
    with pytest.raises(DataError, match="scheme 70-30: no official subset with ground truth to pool"):
        _dm(isic2017_root, tmp_path, dataset="isic2017", split="70-30").setup()  # default pool: train + val


def test_train_test_scheme_validates_on_test(tmp_path, ham10000_root):
    dm = _dm(ham10000_root, tmp_path, split="70-30")
    dm.setup("fit")
    assert dm.manifest.sizes() == {"train": 21, "test": 9}
    with pytest.warns(UserWarning, match="validating on its test subset"):
        loader = dm.val_dataloader()
    assert len(loader.dataset) == 9


def test_progressive_resizing_and_cache_options(tmp_path, ham10000_root, monkeypatch):
    monkeypatch.setenv("LESION_LIGHTNING_CACHE", str(tmp_path / "envcache"))
    dm = _dm(ham10000_root, tmp_path, cache=True, image_size=[32, 48], split="80-20")
    assert dm.cache_dir == tmp_path / "envcache"
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert next(iter(loader))["image"].shape[-2:] == (32, 48)
    dm.set_train_image_size(16)
    assert next(iter(loader))["image"].shape[-2:] == (16, 16)  # same loader object, new size
    assert next(iter(dm.val_dataloader()))["image"].shape[-2:] == (32, 48)

    nocache = _dm(ham10000_root, tmp_path, cache=False, split="80-20")
    nocache.setup()
    assert nocache.cache_dir is None and nocache.datasets["train"].cache is None
    assert next(iter(nocache.train_dataloader()))["image"].shape[-2:] == (32, 32)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"dataset": "isic2019"}, "dataset"),
        ({"split": "90-10"}, "split"),
        ({"split": "missing.json"}, "split"),
        ({"augment": "fancy"}, "augment"),
        ({"on_bad_sample": "ignore"}, "on_bad_sample"),
        ({"image_size": [32]}, "image_size"),
        ({"split": "kfold", "fold": 5}, "fold"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_name_the_option(tmp_path, kwargs, option):
    with pytest.raises(ValueError, match=option):
        LesionDataModule(**kwargs)


def test_lightning_cli_can_build_it_from_plain_options():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(LesionDataModule, "data")
    cfg = parser.parse_args(["--data.image_size=[64, 48]", "--data.cache=false", "--data.pool=[train, val]"])
    init = parser.instantiate_classes(cfg)
    dm = init.data
    assert dm.image_size == (64, 48) and dm.cache_dir is None and dm.pool == ["train", "val"]


def test_dataset_without_transform_gives_raw_arrays(ham10000_root):
    records = read_dataset("ham10000", ham10000_root)[:2]
    item = LesionDataset(records, image_size=(30, 40))[0]
    assert item["image"].shape == (30, 40, 3) and item["image"].dtype == np.uint8
    assert item["mask"].shape == (30, 40) and set(np.unique(item["mask"])) <= {0, 1}
    raw = LesionDataset(records)[1]
    assert raw["image"].shape == (450, 600, 3)


def test_unwritable_cache_folder_falls_back_to_no_cache(tmp_path):
    root = write_dataset(tmp_path / "d", "isic2018", subsets={"train": 6, "val": 2, "test": 2}, image_size=(24, 32))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be\n")
    dm = LesionDataModule(dataset="isic2018", root=str(root), split="official", image_size=16, batch_size=2,
                          cache=str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cache folder not writable"):
        dm.setup("fit")
    assert dm.cache_dir is None and dm.datasets["train"].cache is None
    assert tuple(next(iter(dm.train_dataloader()))["image"].shape) == (2, 3, 16, 16)
    assert blocker.read_text().startswith("a file")

"""The dataset registry: every consumer asks it, and a new dataset is one module."""

from __future__ import annotations

import importlib.util
import textwrap

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.data.checks import check_dataset
from lesion_lightning.data.datasets import get_dataset_spec, list_datasets
from lesion_lightning.data.datasets import registry
from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.data.download import archives, downloadable
from lesion_lightning.data.readers import detect_layout, read_dataset, scan_dataset
from lesion_lightning.data.sizes import parse_size
from lesion_lightning.data.synthetic import write_dataset
from lesion_lightning.paths import sample_dataset_root

# A complete dataset in one module: a flat folder `pics/` of <id>.png images and <id>_gt.png masks.
TINY_MODULE = textwrap.dedent('''
    from pathlib import Path

    from lesion_lightning.data.datasets import DatasetSpec, register_dataset
    from lesion_lightning.data.layout import image_files, pattern_regex
    from lesion_lightning.data.records import SampleRecord

    MASK = "{id}_gt.png"


    def scan(builder, subsets, options):
        folder = builder.root / "pics"
        regex = pattern_regex(MASK)
        masks = {m["id"]: p for p in image_files(folder) if (m := regex.match(p.name))}
        for path in image_files(folder):
            if not regex.match(path.name):
                builder.add(SampleRecord(path.stem, path, masks.get(path.stem)), mask_expected=True)


    def write(root, counts, seed, hw):
        from lesion_lightning.data import synthetic as syn

        for i in range(counts["train"]):
            image, mask = syn.make_sample(syn.image_rng(seed, i), hw)
            syn.write_jpeg(root / "pics" / f"t{i:03d}.png", image)
            syn.write_mask_png(root / "pics" / MASK.format(id=f"t{i:03d}"), mask)


    SPEC = register_dataset(DatasetSpec(
        name="tinyset", label="Tiny set", layout="pics/<id>.png + pics/<id>_gt.png", scan=scan,
        write_synthetic=write, detect=lambda root: (root / "pics").is_dir(), synthetic_images=12))
''')


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # forgotten after the test
    path = tmp_path / "tinyset.py"
    path.write_text(TINY_MODULE)
    spec = importlib.util.spec_from_file_location("tinyset_dataset_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SPEC


def test_built_in_datasets_are_registered_in_order():
    assert list_datasets() == ("isic2018", "isic2017", "ham10000", "ph2", "folder", "ham10000_200", "isic2017_256")
    assert list_datasets(fixed_layout=True) == ("isic2018", "isic2017", "ham10000", "ph2", "ham10000_200",
                                                "isic2017_256")
    assert [n for n in list_datasets() if get_dataset_spec(n).has_official_subsets] == [
        "isic2018", "isic2017", "isic2017_256"]
    assert get_dataset_spec("ham10000").group_by == "lesion_id"
    assert downloadable() == ("isic2018", "isic2017", "ham10000", "ph2")
    with pytest.raises(ValueError, match="dataset: unknown 'isic2016'; choose one of isic2018"):
        get_dataset_spec("isic2016")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_dataset(registry.DatasetSpec(**{**get_dataset_spec("ph2").__dict__}))


def test_the_isic2017_redistribution_is_one_module_over_the_folder_reader(tmp_path):
    """isic2017_256.py: the resized ISIC 2017 redistribution (imgxN.jpg / imgyN.jpg, N restarting per subset)."""
    root = write_dataset(tmp_path / "isic2017_256", "isic2017_256", image_size=(48, 64),
                         subsets={"train": 40, "val": 5, "test": 11})
    assert detect_layout(root) == "isic2017_256"
    assert sorted((root / "testx").iterdir())[0].name == "imgx1.jpg" and (root / "trainy" / "imgy1.jpg").is_file()
    scan = scan_dataset("isic2017_256", root)
    assert not scan.problems
    ids = {s: sorted(r.id for r in scan.records if r.subset == s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in ids.items()} == {"train": 40, "val": 5, "test": 11}
    assert "train-1" in ids["train"] and "test-1" in ids["test"]
    assert {r.mask_encoding for r in scan.records} == {"threshold"}  # JPEG masks
    assert [r.id for r in read_dataset("isic2017_256", root, subsets=["val"])] == [f"val-{n}" for n in range(1, 6)]
    with pytest.raises(Exception, match="no ISIC 2017 redistribution folders"):
        scan_dataset("isic2017_256", tmp_path)


def test_the_ham10000_redistribution_is_one_module_over_the_folder_reader(tmp_path):
    """ham10000_200.py: images/ + masks_200x150/ (interpolated masks: threshold) + metadata grouping lesions."""
    root = write_dataset(tmp_path / "ham10000_200", "ham10000_200", num_images=12, image_size=(30, 40))
    assert sorted(p.name for p in root.iterdir()) == ["HAM10000_metadata.csv", "images", "masks_200x150"]
    assert detect_layout(root) == "ham10000_200"  # not ham10000, whose metadata table it shares
    records = read_dataset("ham10000_200", root)
    assert len(records) == 12 and {r.mask_encoding for r in records} == {"threshold"}
    assert all(r.group.startswith("HAM_") for r in records) and len({r.group for r in records}) < 12
    grey = np.array(Image.open(records[0].mask_path))  # an interpolated edge: grey levels are not a problem
    grey[0, :4] = [40, 100, 160, 220]
    Image.fromarray(grey).save(records[0].mask_path)
    assert check_dataset("ham10000_200", root).ok
    plain = check_dataset("folder", root, mask_dir="masks_200x150")  # the plain folder reader reads them exactly
    assert not plain.ok and any("not binary" in p.problem for p in plain.problems)


def test_a_dataset_from_one_module_works_everywhere(tiny_dataset, tmp_path, monkeypatch):
    assert "tinyset" in list_datasets() and "tinyset" in list_datasets(fixed_layout=True)
    root = write_dataset(tmp_path / "tiny", "tinyset", num_images=10, image_size=(24, 32))
    assert detect_layout(root) == "tinyset"
    records = read_dataset("tinyset", root)
    assert [r.id for r in records] == [f"t{i:03d}" for i in range(10)]
    assert all(r.mask_path is not None and r.mask_path.name == f"{r.id}_gt.png" for r in records)
    with pytest.raises(ValueError, match="no official subsets"):
        scan_dataset("tinyset", root, subsets=["train"])
    with pytest.raises(ValueError, match="cannot be downloaded"):
        archives("tinyset")
    assert sample_dataset_root("tinyset") is None
    dm = LesionDataModule(dataset="tinyset", root=str(root), image_size=16, batch_size=4, cache=False)
    dm.setup("fit")
    assert sum(dm.manifest.sizes().values()) == 10
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (4, 3, 16, 16) and set(np.unique(batch["mask"].numpy())) <= {0.0, 1.0}
    # With no root, the spec's synthetic stand-in (12 images) is written into the cache folder.
    from lesion_lightning.data import datamodule as dm_module

    monkeypatch.setattr(dm_module, "sample_dataset_root", lambda name: None)
    stand_in = LesionDataModule(dataset="tinyset", root=None, image_size=16, cache=str(tmp_path / "cache"))
    stand_in.prepare_data()
    stand_in.setup("fit")
    assert len(stand_in.manifest.ids) == 12


def test_one_size_parser():
    assert parse_size(64) == (64, 64) and parse_size([48, 64]) == (48, 64) and parse_size((np.int64(8), 9)) == (8, 9)
    for bad in (True, 0, [0, 4], [4], "64", [4.0, 4], None):
        with pytest.raises(ValueError, match="data.image_size"):
            parse_size(bad, "data.image_size")


def test_the_documented_example_module_registers_isic2016(tmp_path, monkeypatch):
    from lesion_lightning.paths import REPO_ROOT

    text = (REPO_ROOT / "docs" / "datasets.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    exec(compile(code, "isic2016.py", "exec"), {"__name__": "isic2016"})
    root = write_dataset(tmp_path / "isic2016", "isic2016", subsets={"train": 3, "test": 2}, image_size=(20, 24))
    assert detect_layout(root) == "isic2016"
    assert [r.subset for r in read_dataset("isic2016", root, subsets=["test"])] == ["test", "test"]
    assert len(read_dataset("isic2016", root)) == 5

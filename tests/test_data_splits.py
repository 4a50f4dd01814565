"""Split sizes per paper protocol, disjointness, determinism, grouping, k-fold coverage, manifests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lesion_lightning.data.errors import DataError
from lesion_lightning.data.readers import read_dataset
from lesion_lightning.data.records import SampleRecord
from lesion_lightning.data.splits import SCHEMES, SplitManifest, make_split, split_sizes


def _records(counts: dict[str | None, int], group_size: int = 1, masks: bool = True) -> list[SampleRecord]:
    """In-memory records (no files): `counts` images per official subset (None: no subsets)."""
    out = []
    n = 0
    for subset, k in counts.items():
        for _ in range(k):
            rid = f"ISIC_{n:07d}"
            out.append(SampleRecord(rid, Path(f"/nonexistent/{rid}.jpg"),
                                    Path(f"/nonexistent/{rid}_segmentation.png") if masks else None,
                                    subset, f"HAM_{n // group_size:07d}"))
            n += 1
    return out


def _sizes(manifest: SplitManifest) -> dict[str, int]:
    return {k: len(v) for k, v in manifest.subsets.items()}


def _assert_disjoint_cover(manifest: SplitManifest, ids: set[str]) -> None:
    seen: list[str] = [i for v in manifest.subsets.values() for i in v]
    assert len(seen) == len(set(seen)), "an id is in two subsets"
    assert set(seen) == ids


ISIC2018 = {"train": 2594, "val": 100, "test": 1000}
ISIC2017 = {"train": 2000, "val": 150, "test": 600}


@pytest.mark.parametrize(
    "counts, scheme, expected",
    [
        (ISIC2018, "70-30", {"train": 1886, "test": 808}),  # SCSONet: train+val pooled, 2694
        (ISIC2017, "70-30", {"train": 1500, "test": 650}),  # SCSONet: 2150, the paper's own counts
        (ISIC2018, "80-10-10", {"train": 2956, "val": 369, "test": 369}),  # LANET: 3694 pooled
        (ISIC2017, "80-10-10", {"train": 2200, "val": 275, "test": 275}),  # LANET: 2750 pooled
        # SLSNet Table 4: 80/20 of the official training set, scored on the 100 official validation images
        (ISIC2018, "80-20", {"train": 2075, "val": 519, "test": 100}),
        (ISIC2018, "official", {"train": 2594, "val": 100, "test": 1000}),
    ],
)
def test_paper_split_sizes(counts, scheme, expected):
    records = _records(counts)
    manifest = make_split(records, scheme, seed=1, dataset="isic")
    assert _sizes(manifest) == expected
    pool = {"70-30": ("train", "val"), "80-20": ("train", "val")}.get(scheme, ("train", "val", "test"))
    _assert_disjoint_cover(manifest, {r.id for r in records if r.subset in pool})


def test_80_20_test_subset_is_the_official_val_subset():
    records = _records(ISIC2018)
    manifest = make_split(records, "80-20", seed=3, dataset="isic2018")
    assert manifest.subsets["test"] == sorted(r.id for r in records if r.subset == "val")
    assert {r.subset for r in records if r.id in set(manifest.subsets["train"] + manifest.subsets["val"])} == {"train"}


def test_small_pools_keep_val_and_test_non_empty():
    assert split_sizes("80-10-10", 30) == {"train": 24, "val": 3, "test": 3}
    assert split_sizes("80-10-10", 12) == {"train": 10, "val": 1, "test": 1}
    assert split_sizes("80-10-10", 5) == {"train": 3, "val": 1, "test": 1}
    assert split_sizes("80-10-10", 10015) == {"train": 8011, "val": 1002, "test": 1002}


def test_official_pools_only_subsets_with_ground_truth():
    records = _records({"train": 10, "val": 4}) + [
        SampleRecord(f"ISIC_9{i:06d}", Path(f"/x/{i}.jpg"), None, "test") for i in range(5)
    ]
    manifest = make_split(records, "official")
    assert _sizes(manifest) == {"train": 10, "val": 4}
    assert _sizes(make_split(records, "80-10-10")) == {"train": 12, "val": 1, "test": 1}
    assert _sizes(make_split(records, "70-30", pool=["train"])) == {"train": 7, "test": 3}


def test_determinism_seed_and_input_order():
    records = _records({None: 200}, group_size=3)
    a = make_split(records, "80-10-10", seed=7)
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    assert make_split(shuffled, "80-10-10", seed=7).subsets == a.subsets
    assert make_split(records, "80-10-10", seed=8).subsets != a.subsets


def test_same_split_in_another_process_with_other_hash_seed(tmp_path):
    records = _records({None: 60}, group_size=2)
    expected = make_split(records, "kfold", seed=3, fold=2, folds=4).subsets
    code = (
        "import json, sys; from pathlib import Path\n"
        "from lesion_lightning.data.records import SampleRecord\n"
        "from lesion_lightning.data.splits import make_split\n"
        "recs = [SampleRecord(f'ISIC_{n:07d}', Path('/x'), Path('/y'), None, f'HAM_{n // 2:07d}') for n in range(60)]\n"
        "print(json.dumps(make_split(recs[::-1], 'kfold', seed=3, fold=2, folds=4).subsets))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == expected


def test_lesion_groups_never_straddle_subsets():
    records = _records({None: 301}, group_size=3)  # HAM10000-like: 3 images per lesion
    group_of = {r.id: r.group for r in records}
    for scheme in ("80-10-10", "70-30", "80-20", "kfold"):
        manifest = make_split(records, scheme, seed=5)
        where: dict[str, str] = {}
        for subset, ids in manifest.subsets.items():
            for i in ids:
                assert where.setdefault(group_of[i], subset) == subset, f"{scheme}: lesion {group_of[i]} straddles"
        sizes = _sizes(manifest)
        if scheme == "80-10-10":
            assert abs(sizes["val"] - 30) <= 2 and abs(sizes["test"] - 30) <= 2


def test_real_ham10000_sample_split_has_all_subsets(ham10000_root):
    records = read_dataset("ham10000", ham10000_root)
    manifest = make_split(records, "80-10-10", seed=42, dataset="ham10000")
    assert _sizes(manifest) == {"train": 24, "val": 3, "test": 3}
    _assert_disjoint_cover(manifest, {r.id for r in records})


def test_kfold_each_id_validated_exactly_once():
    records = _records({None: 53}, group_size=2)
    ids = {r.id for r in records}
    val_count: dict[str, int] = {}
    for fold in range(5):
        m = make_split(records, "kfold", folds=5, fold=fold, seed=11)
        assert set(m.subsets) == {"train", "val"}
        _assert_disjoint_cover(m, ids)
        assert 8 <= len(m.subsets["val"]) <= 14
        for i in m.subsets["val"]:
            val_count[i] = val_count.get(i, 0) + 1
        assert m.to_dict()["fold"] == fold
    assert val_count == {i: 1 for i in ids}


def test_bad_split_options():
    records = _records({None: 20})
    with pytest.raises(ValueError, match="scheme"):
        make_split(records, "90-10")
    with pytest.raises(ValueError, match="fold"):
        make_split(records, "kfold", folds=5, fold=5)
    with pytest.raises(ValueError, match="folds"):
        make_split(records[:3], "kfold", folds=5)
    with pytest.raises(ValueError, match="no official subsets"):
        make_split(records, "official")
    with pytest.raises(ValueError, match="pool"):
        make_split(_records({"train": 5, "val": 5}), "80-10-10", pool=["test"])
    with pytest.raises(DataError, match="duplicate"):
        make_split(records + records[:1], "80-20")
    assert set(SCHEMES) == {"80-10-10", "70-30", "80-20", "official", "kfold"}


def test_manifest_roundtrip_format_and_rejection(tmp_path, ham10000_root):
    records = read_dataset("ham10000", ham10000_root)
    manifest = make_split(records, "80-10-10", seed=42, dataset="ham10000")
    path = manifest.save(tmp_path / "split.json")
    data = json.loads(path.read_text())
    assert list(data) == ["dataset", "scheme", "seed", "subsets", "fingerprint"]
    assert data["dataset"] == "ham10000" and data["scheme"] == "80-10-10" and data["seed"] == 42
    assert data["fingerprint"].startswith("sha256:") and len(data["fingerprint"]) == 7 + 64
    loaded = SplitManifest.load(path)
    assert loaded.subsets == manifest.subsets and loaded.fingerprint == manifest.fingerprint
    loaded.check_against(records, dataset="ham10000")  # accepted

    data["subsets"]["test"].append("ISIC_9999999")
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="ISIC_9999999") as exc:
        SplitManifest.load(path).check_against(records)
    assert str(path) in str(exc.value)
    with pytest.raises(DataError, match="not 'ph2'"):
        loaded.check_against(records, dataset="ph2")

    data["subsets"]["test"] = data["subsets"]["train"][:1]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="both"):
        SplitManifest.load(path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        SplitManifest.load(tmp_path / "broken.json")


def test_changed_file_sizes_warn_but_reuse(tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x" * 10)
    records = [SampleRecord("a", img, None), SampleRecord("b", tmp_path / "b.jpg", None),
               SampleRecord("c", tmp_path / "c.jpg", None)]
    manifest = make_split(records, "80-10-10")
    img.write_bytes(b"x" * 11)
    with pytest.warns(UserWarning, match="fingerprint"):
        manifest.check_against(records)


def test_reused_manifest_leaking_a_lesion_is_refused(tmp_path):
    from lesion_lightning.data.datamodule import LesionDataModule
    from lesion_lightning.data.synthetic import write_dataset

    root = write_dataset(tmp_path / "ham", "ham10000", num_images=30, image_size=(32, 40))
    records = read_dataset("ham10000", root)
    lesion, ids = next((g, sorted(r.id for r in records if r.group == g)) for g in sorted({r.group for r in records})
                       if sum(r.group == g for r in records) >= 2)
    manifest = make_split(records, "80-10-10", dataset="ham10000")
    # A manifest made without the metadata (or edited by hand) that separates the lesion's images.
    subsets = {k: [i for i in v if i not in ids] for k, v in manifest.subsets.items()}
    subsets["train"].append(ids[0])
    subsets["test"].extend(ids[1:])
    path = SplitManifest("ham10000", "80-10-10", 42, {k: sorted(v) for k, v in subsets.items()},
                         manifest.fingerprint).save(tmp_path / "leaky.json")
    with pytest.raises(DataError, match=f"lesion {lesion} in several subsets") as exc:
        SplitManifest.load(path).check_against(records, dataset="ham10000")
    assert str(path) in str(exc.value) and all(i in str(exc.value) for i in ids)
    dm = LesionDataModule(dataset="ham10000", root=str(root), split=str(path), image_size=16, cache=False)
    with pytest.raises(DataError, match=f"lesion {lesion}"):
        dm.setup("fit")
    SplitManifest.load(manifest.save(tmp_path / "fine.json")).check_against(records, dataset="ham10000")

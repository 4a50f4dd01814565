"""`lesion-lightning check-data` and `split`, run in-process through the CLI dispatcher."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.cli import main
from lesion_lightning.data.readers import read_dataset
from lesion_lightning.data.splits import make_split
from lesion_lightning.data.synthetic import write_dataset


def test_check_data_real_ph2_clean(ph2_root, capsys):
    assert main(["check-data", "--dataset", "ph2", "--root", str(ph2_root)]) == 0
    out = capsys.readouterr().out
    assert "clean" in out and "12" in out and "PROBLEM" not in out


def test_check_data_json_real_ham10000(ham10000_root, capsys):
    assert main(["check-data", "--dataset", "ham10000", "--root", str(ham10000_root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "ham10000" and report["num_pairs"] == 30 and report["problems"] == []
    assert report["image_height"] == [450, 450] and report["image_width"] == [600, 600]
    assert 0 < report["mask_coverage"]["min"] < report["mask_coverage"]["max"] < 1


def test_check_data_problems_exit_1_naming_each_file(tmp_path, capsys):
    root = write_dataset(tmp_path / "f", "folder", num_images=4, image_size=(24, 32))
    bad_mask = root / "masks" / "img_0001_segmentation.png"
    m = np.zeros((24, 32), np.uint8)
    m[:8], m[8:16] = 50, 255
    Image.fromarray(m).save(bad_mask)
    truncated = root / "images" / "img_0002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])

    assert main(["check-data", "--dataset", "folder", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM {bad_mask}: mask not binary: 3 distinct values" in out
    assert f"PROBLEM {truncated}: unreadable or truncated image" in out

    assert main(["check-data", "--dataset", "folder", "--root", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(p["file"] for p in report["problems"]) == sorted([str(bad_mask), str(truncated)])
    assert report["num_pairs"] == 4 and report["ok"] is False


def test_check_data_against_other_root(tmp_path, capsys):
    a = write_dataset(tmp_path / "a", "isic2017", image_size=(24, 32), subsets={"test": 3})
    b = write_dataset(tmp_path / "b", "isic2018", image_size=(24, 32), subsets={"train": 2})  # same ids, same seed
    assert main(["check-data", "--dataset", "isic2017", "--root", str(a), "--against", str(b), "--json"]) == 0
    overlap = json.loads(capsys.readouterr().out)["overlap"]
    assert overlap["dataset"] == "isic2018"
    assert overlap["shared_ids"] == ["ISIC_0000000", "ISIC_0000001"]
    assert overlap["same_content"] == [["ISIC_0000000", "ISIC_0000000"], ["ISIC_0000001", "ISIC_0000001"]]
    assert main(["check-data", "--dataset", "isic2017", "--root", str(a), "--against", str(tmp_path)]) == 2
    assert "--against-dataset" in capsys.readouterr().err


def test_split_command_writes_the_manifest(tmp_path, ham10000_root, capsys):
    out = tmp_path / "ham_kfold.json"
    args = ["split", "--dataset", "ham10000", "--root", str(ham10000_root), "--scheme", "kfold", "--folds", "5",
            "--fold", "3", "--seed", "7", "--out", str(out)]
    assert main(args) == 0
    assert "train 24, val 6" in capsys.readouterr().out
    data = json.loads(out.read_text())
    expected = make_split(read_dataset("ham10000", ham10000_root), "kfold", seed=7, fold=3, folds=5, dataset="ham10000")
    assert data == expected.to_dict()
    assert data["fold"] == 3 and data["folds"] == 5


def test_split_command_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    base = ["split", "--dataset", "ph2", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "s.json")]
    assert main([*base, "--scheme", "80-10-10"]) == 1
    assert "empty dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--scheme", "90-10"])
    assert exc.value.code == 2 and "--scheme" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()

"""benchmarks/real_accuracy.py and benchmarks/peer_speed.py: argument parsing, skip and refusal paths (no training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import isic_subset  # noqa: E402
import real_accuracy  # noqa: E402


def _script(name: str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / name), *argv], capture_output=True, text=True, env=env,
                          timeout=60)


def _fake_isic(root: Path, n_train: int, n_val: int) -> Path:
    for subset, n in (("train", n_train), ("val", n_val)):
        for folder in (isic_subset.IMAGE_DIRS[subset], isic_subset.MASK_DIRS[subset]):
            (root / folder).mkdir(parents=True)
        for i in range(n):
            image, mask = isic_subset.pair_paths(root, subset, f"ISIC_{subset}{i}")
            image.touch()
            mask.touch()
    return root


def test_accuracy_parses_budget_and_refuses_a_tiny_one():
    args = real_accuracy.parse_args(["--epochs", "2", "--size", "96", "--floor", "0.5"])
    assert (args.epochs, args.size, args.floor, args.seed) == (2, 96, 0.5, 42)
    with pytest.raises(SystemExit):
        real_accuracy.parse_args(["--size", "16"])


def test_accuracy_skips_cleanly_without_data(tmp_path):
    run = _script("real_accuracy.py", "--data-root", str(tmp_path / "absent"))
    assert run.returncode == 0
    assert run.stdout.startswith("real_accuracy: SKIPPED:") and str(tmp_path / "absent") in run.stdout
    assert "Traceback" not in run.stderr


def test_accuracy_fit_command_uses_recipe_subset_and_budget(tmp_path):
    root = _fake_isic(tmp_path / "isic", n_train=5, n_val=2)
    subsets = isic_subset.subset_ids(root, 3)
    assert subsets["train"] == ["ISIC_train0", "ISIC_train1", "ISIC_train2"]
    assert len(subsets["val"]) == 2
    manifest = isic_subset.write_split_manifest(subsets, tmp_path / "split.json")
    assert json.loads(manifest.read_text())["subsets"] == subsets
    args = real_accuracy.parse_args(["--data-root", str(root), "--epochs", "3", "--size", "64"])
    cmd = real_accuracy.fit_command(args, manifest, tmp_path / "out")
    assert cmd[1:4] == ["fit", "--config", str(real_accuracy.CONFIG)]
    assert {f"--data.split={manifest}", "--trainer.max_epochs=3", "--data.image_size=64",
            "--seed_everything=42"} <= set(cmd)
    with pytest.raises(SystemExit, match="only 5 training images"):
        isic_subset.subset_ids(root, 6)


def test_peer_speed_refuses_missing_peer_dir(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "SCSONET_PEER_DIR"}
    for argv in ([], ["--peer-dir", str(tmp_path / "nowhere")]):
        run = _script("peer_speed.py", *argv, env=env)
        assert run.returncode == 2
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --peer-dir")
        assert "git clone https://github.com/Haoyu1Chen/SCSONet" in lines[0]

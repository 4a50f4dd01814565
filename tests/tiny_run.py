"""A tiny real training run for the tests that need a trained model (export, predict, explain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesion_lightning.cli import main
from lesion_lightning.paths import sample_dataset_root

REPO = Path(__file__).resolve().parent.parent
DEMO = str(REPO / "experiments" / "demo.yaml")


def ham10000_or_skip() -> Path:
    """The real HAM10000 sample's root; skips the test when it is absent."""
    ham = sample_dataset_root("ham10000")
    if ham is None:
        pytest.skip("real ham10000 sample not found (expected ../shared/data/ham10000)")
    return ham


def fit_tiny_run(tmp: Path) -> Path:
    """A real run folder (config.yaml, metrics.json, environment.json, checkpoints) from the training CLI.

    simple_unet (base width 4) on the HAM10000 sample: 1 epoch of 2 batches of 4 at 64x64, under `tmp`.
    """
    ham = ham10000_or_skip()
    main([
        "fit", "--config", DEMO, f"--data.root={ham}", "--data.image_size=64", "--data.batch_size=4",
        f"--data.cache={tmp / 'cache'}", f"--output_root={tmp / 'runs'}", "--trainer.enable_progress_bar=false",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--logger=none", "--run_name=tiny", "--model.model_kwargs={base_width: 4}",
    ])
    return tmp / "runs" / "demo" / "tiny"

"""Shared fixtures: real sample data from ../shared/data (skipped with a reason when absent), offline W&B."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No test may reach a W&B server: offline mode, and any stray network call fails fast.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["WANDB_BASE_URL"] = "http://127.0.0.1:9"
os.environ.setdefault("MPLBACKEND", "Agg")

from lesion_lightning.paths import sample_dataset_root  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_wandb_settings():
    """W&B caches its settings (mode included) in a process-wide singleton on first use: tear it down after
    each test so that one test's WANDB_MODE cannot decide another's."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


def _sample(name: str) -> Path:
    root = sample_dataset_root(name)
    if root is None:
        pytest.skip(f"real {name} sample not found (expected ../shared/data/{name} beside the checkout)")
    return root


@pytest.fixture
def ham10000_root() -> Path:
    return _sample("ham10000")


@pytest.fixture
def ph2_root() -> Path:
    return _sample("ph2")


@pytest.fixture
def isic2017_root() -> Path:
    return _sample("isic2017")

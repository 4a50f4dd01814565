"""Where the embedded sample data lives (`../shared/data` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# dataset name -> folder under the shared sample-data root
SAMPLE_FOLDERS = {"ham10000": "ham10000", "ph2": "ph2", "isic2017": "isic2017"}


def shared_data_root() -> Path | None:
    """The real sample data: $LESION_LIGHTNING_SAMPLE_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("LESION_LIGHTNING_SAMPLE_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def sample_dataset_root(dataset: str) -> Path | None:
    root = shared_data_root()
    if root is None or dataset not in SAMPLE_FOLDERS:
        return None
    path = root / SAMPLE_FOLDERS[dataset]
    return path if path.is_dir() else None

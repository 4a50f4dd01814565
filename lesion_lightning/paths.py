"""Where the embedded sample data lives (`../shared/data` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """The real sample of `dataset` (its spec's sample_folder under the shared data root), or None."""
    from lesion_lightning.data.datasets import get_dataset_spec, list_datasets

    root = shared_data_root()
    folder = get_dataset_spec(dataset).sample_folder if dataset in list_datasets() else None
    if root is None or folder is None:
        return None
    path = root / folder
    return path if path.is_dir() else None

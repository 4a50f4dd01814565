"""Measured model costs cached on disk, so that `lesion-lightning models` does not profile every model on
every call. An entry is valid while the source of the models and layers and the torch version are the same
(any edit there recomputes every entry)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent
CACHE_FILE = "model_costs.json"


def source_fingerprint() -> str:
    """SHA-256 over the model and layer sources and the torch version."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for folder in ("models", "layers"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            digest.update(path.relative_to(PACKAGE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class CostCache:
    """{model name: measured cost fields} in `<folder>/model_costs.json`, for one source fingerprint."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / CACHE_FILE
        self.fingerprint = source_fingerprint()
        self.entries: dict[str, dict[str, Any]] = {}
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(stored, dict) and stored.get("fingerprint") == self.fingerprint:
            self.entries = dict(stored.get("models") or {})

    def get(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)

    def put(self, name: str, costs: dict[str, Any]) -> None:
        self.entries[name] = costs

    def save(self) -> None:
        """Write atomically; a read-only cache folder only costs the speed-up."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "models": self.entries}, indent=1))
            os.replace(tmp, self.path)
        except OSError:
            pass

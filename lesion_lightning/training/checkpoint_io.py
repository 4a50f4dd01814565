"""Checkpoint files written whole or not at all.

Lightning's default `TorchCheckpointIO` stages a checkpoint in the system temp folder and moves it into
place; when that folder is on another disk the move is a copy, and a full output disk leaves a truncated
`best-*.ckpt` that checkpoint lookup would then prefer. This writes a temporary file beside the target,
syncs it, and renames it over the target (atomic on one file system); on any error the temporary file
is removed and an existing checkpoint of that name stays as it was.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(buffer.getbuffer())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

"""ONNX Runtime as the network's backend for inference on CPU (`predict --backend auto|onnx|eager`).

The probability model of a checkpoint is exported once per checkpoint file and working size with
`onnx_export.export_onnx` (verified against PyTorch there) into the cache folder
(`<cache>/onnx/<sha256 of the checkpoint>-<H>x<W>.onnx`) beside a JSON of the verification result. A
later call reads that result instead of exporting again; an export that did not verify (e.g. SCSONet's
hard SRU gate, see docs/deployment.md) is remembered too, so `auto` falls back to eager PyTorch at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesion_lightning.data.overlap import file_sha256

BACKENDS = ("auto", "eager", "onnx")


class OnnxUnavailable(RuntimeError):
    """The model cannot run through ONNX Runtime; the message says why in one line."""


class OnnxNet:
    """(B, 3, h, w) tensor -> (B, 1, h, w) lesion probabilities through an ONNX Runtime session."""

    def __init__(self, path: Path, info: dict[str, Any], threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        fixed = info.get("fixed_shape")
        self.batch_one = bool(fixed) and fixed[0] == 1  # exported for one image at a time
        self.info = info

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.batch_one:
            out = np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            out = self.session.run(None, {self.input_name: x})[0]
        return torch.from_numpy(out)


def _cache_paths(checkpoint: Path, size: tuple[int, int], cache_dir: Path) -> tuple[Path, Path]:
    stem = f"{file_sha256(checkpoint)[:16]}-{size[0]}x{size[1]}"
    folder = cache_dir / "onnx"
    return folder / f"{stem}.onnx", folder / f"{stem}.json"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def onnx_net(model: torch.nn.Module, checkpoint: Path, size: tuple[int, int], cache_dir: Path) -> OnnxNet:
    """The cached, verified ONNX export of `model` (its checkpoint file and working `size`); exports once.
    Raises `OnnxUnavailable` when the export does not reproduce PyTorch (now or when it was tried)."""
    from lesion_lightning.inference.export_checks import ExportError, probability_model, short_error
    from lesion_lightning.inference.onnx_export import export_onnx

    onnx_path, result_path = _cache_paths(checkpoint, size, cache_dir)
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if not result.get("verified"):
            raise OnnxUnavailable(result.get("reason", "the ONNX export did not verify"))
        if onnx_path.is_file():
            return OnnxNet(onnx_path, result["export"])
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(f".tmp{os.getpid()}.onnx")
    try:
        info = export_onnx(probability_model(model).eval(), tmp, size)
    except ExportError as exc:
        reason = short_error(exc)
        _write_json(result_path, {"verified": False, "reason": reason, "checkpoint": str(checkpoint)})
        tmp.unlink(missing_ok=True)
        raise OnnxUnavailable(reason) from exc
    os.replace(tmp, onnx_path)
    _write_json(result_path, {"verified": True, "export": info, "checkpoint": str(checkpoint)})
    return OnnxNet(onnx_path, info)

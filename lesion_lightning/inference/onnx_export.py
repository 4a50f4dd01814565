"""ONNX export of a probability model, verified with ONNX Runtime (see `lesion_lightning.inference.export`)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesion_lightning.inference.export_checks import (
    DEFAULT_OPSET,
    TOLERANCE,
    ExportError,
    check_shapes,
    max_diff,
    short_error,
)

if TYPE_CHECKING:
    import torch
    from torch import nn


# -- ONNX ------------------------------------------------------------------------------------------
# Tried in order: the first whose ONNX Runtime outputs match PyTorch on the shapes it claims wins.
# (exporter, description, dynamic axes, checks that must pass). The TorchScript-based exporter comes
# first: fast, and mature on these CNNs' ops (max-unpool, pixel shuffle, ...). Where it cannot see a
# static input size (adaptive pooling to a non-1 output after a reshape, as in SLSNet's DANet
# attention) or froze a batch-dependent shape, the torch.export-based (dynamo) exporter follows.
ONNX_TIERS = (
    ("torchscript", "dynamic", ("batch", "height", "width"), ("export shape", "batch 2", "other size")),
    ("torchscript", "fixed spatial size, dynamic batch", ("batch",), ("export shape", "batch 2")),
    ("dynamo", "dynamic", ("batch", "height", "width"), ("export shape", "batch 2", "other size")),
    ("torchscript", "fixed shape", (), ("export shape",)),
    ("dynamo", "fixed shape", (), ("export shape",)),
)
_AXIS_INDEX = {"batch": 0, "height": 2, "width": 3}


class _Quiet:
    """Silence the exporters' own console output (graph dumps, progress) while they run: the C++ side
    writes straight to file descriptors 1 and 2, so both are pointed at /dev/null for the duration."""

    def __enter__(self):
        import os

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")
        self._saved: list[tuple[int, int]] = []
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            try:
                stream.flush()
                saved = os.dup(fd)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
                self._saved.append((fd, saved))
            except (OSError, ValueError):
                pass
        return self

    def __exit__(self, *exc):
        import os

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, saved in self._saved:
            os.dup2(saved, fd)
            os.close(saved)
        self._catch.__exit__(*exc)
        return False


def write_onnx(module: nn.Module, path: Path, size: tuple[int, int], opset: int, axes: tuple[str, ...],
                 exporter: str = "torchscript") -> None:
    import torch

    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with _Quiet():
        if exporter == "dynamo":
            shapes = {"image": {_AXIS_INDEX[a]: torch.export.Dim.AUTO for a in axes}} if axes else None
            torch.onnx.export(module, (x,), str(path), dynamo=True, opset_version=max(opset, 18),
                              input_names=["image"], output_names=["probabilities"], dynamic_shapes=shapes,
                              external_data=False, verbose=False)
        else:
            spec = {_AXIS_INDEX[a]: a for a in axes}
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=["probabilities"],
                              dynamic_axes={"image": spec, "probabilities": spec} if spec else None,
                              do_constant_folding=True)


def _onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_diffs(path: Path, checks) -> tuple[dict[str, float], list[str]]:
    """({check name: max abs diff}, [errors]); a shape ONNX Runtime cannot run counts as inf."""
    import onnx

    onnx.checker.check_model(str(path))
    session = _onnx_session(path)
    diffs: dict[str, float] = {}
    errors: list[str] = []
    for name, x, ref in checks:
        try:
            diffs[name] = max_diff(session.run(None, {"image": x.numpy()})[0], ref)
        except Exception as exc:  # onnxruntime raises its own exception types
            diffs[name] = float("inf")
            errors.append(f"{name}: {short_error(exc)}")
    return diffs, errors


def export_onnx(model: nn.Module, path: Path, size: tuple[int, int], *, opset: int = DEFAULT_OPSET,
                tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Export `model` (already a probability model) to ONNX and verify it with ONNX Runtime.

    Dynamic batch and spatial axes when the graph reproduces PyTorch at other shapes; otherwise a
    fixed spatial size (dynamic batch), else a fixed (1, 3, H, W) shape, each stated in the notes.
    """
    checks = check_shapes(model, size)
    notes: list[str] = []
    unsupported = False  # did the TorchScript-based exporter fail on an op (rather than on numbers)?
    for exporter, tier, axes, claimed in ONNX_TIERS:
        mine = [c for c in checks if c[0].split(" (")[0] in claimed]
        label = f"{exporter} exporter, {tier}"
        if exporter == "dynamo" and tier == "dynamic" and not unsupported:
            # The graph exported but froze shapes (e.g. SCSONet's ODConv folds the batch into conv
            # groups): a shape-specialised model, for which the fixed-shape export is the answer.
            continue
        try:
            write_onnx(model, path, size, opset, axes, exporter)
            diffs, errors = _onnx_diffs(path, mine)
        except Exception as exc:  # the exporters raise many types (SymbolicValueError, TorchExportError, ...)
            notes.append(f"{label}: export failed: {short_error(exc)}")
            unsupported = unsupported or exporter == "torchscript"
            continue
        worst = max(diffs.values())
        if worst <= tolerance:
            import onnx

            info: dict[str, Any] = {"format": "onnx", "exporter": f"torch.onnx ({exporter})",
                                    "opset": next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                                                   if o.domain in ("", "ai.onnx")), opset),
                                    "input": "image", "output": "probabilities", "spatial": tier,
                                    "dynamic_axes": list(axes), "max_abs_diff": diffs}
            if tier != "dynamic":
                info["fixed_shape"] = ["batch" if "batch" in axes else 1, 3, *size]
                notes.append(f"exported with a {tier} ({size[0]}x{size[1]}): resize inputs to that size")
            if notes:
                info["notes"] = notes
            return info
        notes.append(f"{label}: ONNX Runtime differs from PyTorch (max abs diff {worst:.3g}"
                     f"{'; ' + '; '.join(errors) if errors else ''})")
    path.unlink(missing_ok=True)
    raise ExportError(f"ONNX export (opset {opset}) does not reproduce PyTorch within {tolerance:g}: "
                      + " | ".join(notes) + conditioning_note(model, checks[0][1], checks[0][2], tolerance))


def conditioning_note(model: nn.Module, x: torch.Tensor, ref: torch.Tensor, tolerance: float) -> str:
    """Tell an exporter problem from a model that float32 cannot evaluate to `tolerance` at all."""
    import copy

    import torch

    try:
        with torch.no_grad():
            exact = copy.deepcopy(model).double()(x.double()).float()
        gap = float((exact - ref).abs().max())
    except Exception:  # noqa: BLE001 - a diagnostic only
        return ""
    if gap > tolerance:
        return (f". Note: PyTorch itself differs by {gap:.3g} between float32 and float64 on this input, so these "
                "weights are numerically ill-conditioned at this size and no float32 runtime can match PyTorch "
                "to the tolerance (check the checkpoint, or export at another --size)")
    return f". (PyTorch float32 vs float64: {gap:.2g}, so the exporter/runtime is at fault, not the model)"

"""`lesion-lightning export --ckpt RUN_OR_CKPT --format onnx|torchscript|safetensors --output FILE`.

Every export is verified against the PyTorch model before the command reports success:
- **onnx**: the graph maps a normalised (N, 3, H, W) float32 image batch to (N, 1, H, W) lesion
  probabilities (sigmoid or softmax head already applied). Batch and spatial axes are dynamic. ONNX
  Runtime is compared with PyTorch at the export size and at a second size/batch; the max abs
  difference must be below `--tolerance` (1e-4), else the command fails and the file is removed.
  Models whose graph is not size-generic (e.g. adaptive pooling whose input size the exporter cannot
  see, or shapes computed in Python and frozen into the graph) are re-exported with a **fixed spatial
  size** (batch still dynamic): the command says so, and the model card records `"spatial": "fixed"`.
- **torchscript**: `torch.jit.trace` of the same probability model, verified the same way (a traced
  model that only reproduces PyTorch at the export size is reported as fixed-size).
- **safetensors**: the architecture's weights (`state_dict` of the registered model, without the
  Lightning task); reloaded into a freshly built model and compared (must be identical).

Each export writes a JSON model card beside the file (`<output stem>.json`): architecture name and
kwargs, parameters, MACs at the input size, input size, normalisation, threshold, training data and
split, metrics from the run's metrics.json, git commits (training run and exporting tree), the
verification results and the file's SHA-256.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lesion_lightning.inference import LoadedTask

FORMATS = ("onnx", "torchscript", "safetensors")
DEFAULT_EXTENSIONS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
DEFAULT_OPSET = 17
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An export that failed or does not reproduce the PyTorch model."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, metavar="RUN_OR_CKPT", help="run folder or .ckpt file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE",
                        help="output file (the model card goes beside it as <stem>.json)")
    parser.add_argument("--size", default=None, metavar="N|HxW",
                        help="input size of the export/verification (default: the run's working size)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"max abs difference allowed against PyTorch (default {TOLERANCE:g})")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (can execute code: trusted files only)")


def parse_size(value: str | int | None) -> tuple[int, int] | None:
    if value is None:
        return None
    text = str(value).lower().replace(",", "x")
    try:
        parts = [int(v) for v in text.split("x")]
    except ValueError:
        raise ValueError(f"--size: expected N or HxW, got {value!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise ValueError(f"--size: expected N or HxW with sides >= 8, got {value!r}")
    return parts[0], parts[1]


# -- the exported module -------------------------------------------------------------------------
def probability_model(model: nn.Module) -> nn.Module:
    """The architecture followed by its head's activation: (N, 3, H, W) -> (N, 1, H, W) probabilities."""
    from torch import nn

    from lesion_lightning.training.task import lesion_probabilities

    class LesionProbabilities(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, image):
            return lesion_probabilities(self.net(image))

    return LesionProbabilities(model).eval()


def _second_shape(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A batch of 2 at another spatial size (multiples of 32 keep every encoder's stride happy)."""
    h, w = size
    return (2, 3, max(32, (h + h // 2) // 32 * 32), max(32, (w // 2) // 32 * 32 if w >= 96 else w * 2))


def _reference(module: nn.Module, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    import torch

    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    try:
        with torch.no_grad():
            return x, module(x)
    except RuntimeError:
        return None  # the model itself does not run at this shape: nothing to compare there


def _max_diff(a: Any, b: torch.Tensor) -> float:
    import numpy as np

    a = np.asarray(a)
    if a.shape != tuple(b.shape):
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.numpy().astype(np.float64)).max())


def _check_shapes(module: nn.Module, size: tuple[int, int]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """[(name, input, PyTorch output)]: the export shape, batch 2 at that size, batch 2 at another size."""
    h, w = size
    checks = [("export shape", (1, 3, h, w), 0), ("batch 2", (2, 3, h, w), 1),
              ("other size", _second_shape(size), 2)]
    out = []
    for name, shape, seed in checks:
        ref = _reference(module, shape, seed)
        if ref is not None:
            out.append((f"{name} {tuple(shape)}", *ref))
        elif name == "export shape":
            raise ExportError(f"the model does not run at input size {h}x{w}")
    return out


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


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


def _onnx_export(module: nn.Module, path: Path, size: tuple[int, int], opset: int, axes: tuple[str, ...],
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
            diffs[name] = _max_diff(session.run(None, {"image": x.numpy()})[0], ref)
        except Exception as exc:  # onnxruntime raises its own exception types
            diffs[name] = float("inf")
            errors.append(f"{name}: {_short(exc)}")
    return diffs, errors


def export_onnx(model: nn.Module, path: Path, size: tuple[int, int], *, opset: int = DEFAULT_OPSET,
                tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Export `model` (already a probability model) to ONNX and verify it with ONNX Runtime.

    Dynamic batch and spatial axes when the graph reproduces PyTorch at other shapes; otherwise a
    fixed spatial size (dynamic batch), else a fixed (1, 3, H, W) shape, each stated in the notes.
    """
    checks = _check_shapes(model, size)
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
            _onnx_export(model, path, size, opset, axes, exporter)
            diffs, errors = _onnx_diffs(path, mine)
        except Exception as exc:  # the exporters raise many types (SymbolicValueError, TorchExportError, ...)
            notes.append(f"{label}: export failed: {_short(exc)}")
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
                      + " | ".join(notes) + _conditioning_note(model, checks[0][1], checks[0][2], tolerance))


def _conditioning_note(model: nn.Module, x: torch.Tensor, ref: torch.Tensor, tolerance: float) -> str:
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


# -- TorchScript -----------------------------------------------------------------------------------
def export_torchscript(model: nn.Module, path: Path, size: tuple[int, int], *,
                       tolerance: float = TOLERANCE) -> dict[str, Any]:
    """`torch.jit.trace` + freeze, reloaded and compared with PyTorch at the export and other shapes."""
    import torch

    checks = _check_shapes(model, size)
    example = checks[0][1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (example,), check_trace=False)
            traced = torch.jit.freeze(traced.eval())
            traced.save(str(path))
            loaded = torch.jit.load(str(path))
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"TorchScript trace failed: {_short(exc)}") from exc
    diffs: dict[str, float] = {}
    with torch.no_grad():
        for name, x, ref in checks:
            try:
                diffs[name] = _max_diff(loaded(x).numpy(), ref)
            except RuntimeError:
                diffs[name] = float("inf")
    ok = {name.split(" (")[0] for name, value in diffs.items() if value <= tolerance}
    if "export shape" not in ok:
        path.unlink(missing_ok=True)
        raise ExportError(f"TorchScript does not reproduce PyTorch at the export shape: max abs diff "
                          f"{diffs[checks[0][0]]:.3g} > {tolerance:g}")
    info: dict[str, Any] = {"format": "torchscript", "method": "torch.jit.trace + torch.jit.freeze"}
    if {"batch 2", "other size"} <= ok:
        info["spatial"] = "dynamic"
    elif "batch 2" in ok:
        info.update(spatial="fixed spatial size, dynamic batch", fixed_shape=["batch", 3, *size])
    else:
        info.update(spatial="fixed shape", fixed_shape=[1, 3, *size])
    if info["spatial"] != "dynamic":
        info["notes"] = [f"the traced graph froze shapes of the {size[0]}x{size[1]} trace ({info['spatial']}): "
                         "resize inputs to that size"]
    info["max_abs_diff"] = {k: v for k, v in diffs.items() if k.split(" (")[0] in ok}
    return info


# -- safetensors -----------------------------------------------------------------------------------
def export_safetensors(model: nn.Module, path: Path, size: tuple[int, int], *, model_name: str,
                       model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Weights of the bare architecture; verified by reloading into a fresh `create_model(...)`."""
    import torch
    from safetensors.torch import load_file, save_file

    from lesion_lightning.models import create_model

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"architecture": model_name, "model_kwargs": json.dumps(model_kwargs),
                                          "format": "pt"})
    fresh = create_model(model_name, **model_kwargs).eval()
    fresh.load_state_dict(load_file(str(path)), strict=True)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((fresh(x) - model(x)).abs().max())
    if diff != 0.0:
        raise ExportError(f"{path}: reloaded weights give different outputs (max abs diff {diff:.3g})")
    return {"format": "safetensors", "tensors": len(state), "max_abs_diff": {"reloaded model": diff},
            "load": f"create_model({model_name!r}, **model_kwargs).load_state_dict(safetensors.torch.load_file(path))"}


# -- model card --------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def model_card(loaded: LoadedTask, size: tuple[int, int], export_info: dict[str, Any], output: Path) -> dict[str, Any]:
    from lesion_lightning.training.run_folder import git_commit
    from lesion_lightning.utils.complexity import measure_complexity

    model = loaded.task.model
    complexity = measure_complexity(model, (3, *size)).as_dict()
    run_dir = loaded.run_dir
    split = _read_json(run_dir / "split.json" if run_dir else None)
    environment = _read_json(run_dir / "environment.json" if run_dir else None)
    data = loaded.datamodule_hparams or (loaded.run_config.get("data") or {})
    training_data = {k: data.get(k) for k in ("dataset", "root", "split", "seed", "fold", "folds", "pool",
                                              "image_size", "augment") if k in data}
    if split:
        training_data["split_manifest"] = {"scheme": split.get("scheme"), "seed": split.get("seed"),
                                           "subset_sizes": {k: len(v) for k, v in (split.get("subsets") or {}).items()}}
    num_classes = getattr(loaded.task, "num_classes", 1)
    return {
        "name": output.stem,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "architecture": {"name": loaded.model_name, "kwargs": loaded.model_kwargs,
                         "task_class": loaded.class_path, "head": "sigmoid" if num_classes == 1 else "softmax"},
        "params": complexity["params"],
        "macs": complexity["macs"],
        "gmacs": round(complexity["gmacs"], 4),
        "input": {**loaded.preprocessing.as_dict(), "export_size": list(size)},
        "output": "lesion probabilities (N, 1, H, W) in [0, 1]" if export_info["format"] != "safetensors"
        else f"raw logits ({num_classes} channel(s)) of the bare architecture",
        "threshold": loaded.threshold,
        "training_data": training_data,
        "metrics": _read_json(run_dir / "metrics.json" if run_dir else None),
        "checkpoint": {"path": str(loaded.checkpoint_path), "epoch": loaded.epoch, "global_step": loaded.global_step},
        "git": {"training_run": environment.get("git"), "export": git_commit()},
        "export": export_info,
        "file": {"path": output.name, "bytes": output.stat().st_size, "sha256": _sha256(output)},
    }


def export_loaded(loaded: LoadedTask, fmt: str, output: Path, size: tuple[int, int] | None = None, *,
                  opset: int = DEFAULT_OPSET, tolerance: float = TOLERANCE) -> tuple[dict[str, Any], Path]:
    """Export a loaded task; returns (model card, card path)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    size = size or loaded.preprocessing.image_size
    output = Path(output)
    if output.suffix.lower() == ".json":
        raise ExportError(f"--output {output}: .json is the model card's name; use e.g. {output.with_suffix(DEFAULT_EXTENSIONS[fmt])}")
    output.parent.mkdir(parents=True, exist_ok=True)
    task = loaded.task.cpu().eval()
    if fmt == "safetensors":
        info = export_safetensors(task.model, output, size, model_name=loaded.model_name, model_kwargs=loaded.model_kwargs)
    elif fmt == "onnx":
        info = export_onnx(probability_model(task.model), output, size, opset=opset, tolerance=tolerance)
    else:
        info = export_torchscript(probability_model(task.model), output, size, tolerance=tolerance)
    info["tolerance"] = tolerance
    card = model_card(loaded, size, info, output)
    card_path = output.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    return card, card_path


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.inference import CheckpointError, load_task

    try:
        size = parse_size(args.size)
        loaded = load_task(args.ckpt, trust_checkpoint=args.trust_checkpoint)
        card, card_path = export_loaded(loaded, args.format, args.output, size, opset=args.opset,
                                        tolerance=args.tolerance)
    except (CheckpointError, ExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = card["export"]
    diffs = ", ".join(f"{k}: {v:.2e}" for k, v in info["max_abs_diff"].items())
    for note in info.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    spatial = info.get("spatial")
    print(f"exported {loaded.model_name} ({card['params']:,} params, {card['gmacs']} GMACs at "
          f"{card['input']['export_size'][0]}x{card['input']['export_size'][1]}) to {args.output} [{args.format}"
          f"{', ' + spatial + ' spatial size' if spatial else ''}]")
    print(f"verified against PyTorch: max abs diff {diffs} (tolerance {args.tolerance:g})")
    print(f"model card: {card_path}")
    return 0

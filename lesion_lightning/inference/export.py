"""Export a trained model to ONNX, TorchScript or safetensors (`lesion-lightning export`).

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

import datetime as _dt
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesion_lightning.inference.export_checks import (
    DEFAULT_OPSET,
    TOLERANCE,
    ExportError,
    check_shapes,
    max_diff,
    probability_model,
    short_error,
)
from lesion_lightning.data.overlap import file_sha256
from lesion_lightning.inference.onnx_export import export_onnx

if TYPE_CHECKING:
    from torch import nn

    from lesion_lightning.inference.checkpoint import LoadedTask

FORMATS = ("onnx", "torchscript", "safetensors")
DEFAULT_OUTPUT_ROOT = Path("results") / "export"
DEFAULT_EXTENSIONS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
__all__ = ["DEFAULT_OPSET", "DEFAULT_OUTPUT_ROOT", "FORMATS", "TOLERANCE", "ExportError", "default_output",
           "export_loaded", "model_card", "parse_size"]


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

# -- TorchScript -----------------------------------------------------------------------------------
def export_torchscript(model: nn.Module, path: Path, size: tuple[int, int], *,
                       tolerance: float = TOLERANCE) -> dict[str, Any]:
    """`torch.jit.trace` + freeze, reloaded and compared with PyTorch at the export and other shapes."""
    import torch

    checks = check_shapes(model, size)
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
        raise ExportError(f"TorchScript trace failed: {short_error(exc)}") from exc
    diffs: dict[str, float] = {}
    with torch.no_grad():
        for name, x, ref in checks:
            try:
                diffs[name] = max_diff(loaded(x).numpy(), ref)
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

def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _checkpoint_metrics(run_metrics: dict[str, Any], loaded: LoadedTask) -> dict[str, Any]:
    """The run's metrics that belong to the exported checkpoint: its epoch's validation scores (the run's
    selected or last epoch) and a test of that very file; nothing measured on another checkpoint."""
    if loaded.card is not None:
        return dict(loaded.card.get("metrics") or {})
    out: dict[str, Any] = {}
    for key in ("val", "val_last_epoch"):
        entry = run_metrics.get(key)
        if isinstance(entry, dict) and entry.get("epoch") == loaded.epoch and "val" not in out:
            out["val"] = entry
    test = run_metrics.get("test")
    if isinstance(test, dict) and Path(str(test.get("checkpoint", ""))).name == loaded.checkpoint_path.name:
        out["test"] = test
    for key in ("data_source",):
        if key in run_metrics:
            out[key] = run_metrics[key]
    return out


def model_card(loaded: LoadedTask, size: tuple[int, int], export_info: dict[str, Any], output: Path, *,
               note: str | None = None, training_root: str | None = None) -> dict[str, Any]:
    from lesion_lightning.training.run_folder import git_commit
    from lesion_lightning.utils.complexity import measure_complexity

    model = loaded.task.model
    complexity = measure_complexity(model, (3, *size)).as_dict()
    run_dir = loaded.run_dir
    split = _read_json(loaded.split_path)
    environment = _read_json(run_dir / "environment.json" if run_dir else None)
    data = loaded.datamodule_hparams or (loaded.run_config.get("data") or {})
    training_data = {k: data.get(k) for k in ("dataset", "root", "split", "seed", "fold", "folds", "pool",
                                              "image_size", "augment") if k in data}
    if training_root is not None:
        training_data["root"] = training_root
    if split:
        training_data["split_manifest"] = {"scheme": split.get("scheme"), "seed": split.get("seed"),
                                           "subset_sizes": {k: len(v) for k, v in (split.get("subsets") or {}).items()}}
    num_classes = getattr(loaded.task, "num_classes", 1)
    return {
        "name": output.stem,
        **({"note": note} if note else {}),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "architecture": {"name": loaded.model_name, "kwargs": loaded.model_kwargs,
                         "task_class": loaded.class_path, "head": "sigmoid" if num_classes == 1 else "softmax"},
        "task": {"class_path": loaded.class_path, "init_args": loaded.hparams},
        "params": complexity["params"],
        "macs": complexity["macs"],
        "gmacs": round(complexity["gmacs"], 4),
        "input": {**loaded.preprocessing.as_dict(), "export_size": list(size)},
        "output": "lesion probabilities (N, 1, H, W) in [0, 1]" if export_info["format"] != "safetensors"
        else f"raw logits ({num_classes} channel(s)) of the bare architecture",
        "threshold": loaded.threshold,
        "training_data": training_data,
        "metrics": _checkpoint_metrics(_read_json(run_dir / "metrics.json" if run_dir else None), loaded),
        "checkpoint": {"path": str(loaded.checkpoint_path), "epoch": loaded.epoch, "global_step": loaded.global_step},
        "git": {"training_run": environment.get("git"), "export": git_commit()},
        "export": export_info,
        "file": {"path": output.name, "bytes": output.stat().st_size, "sha256": file_sha256(output)},
    }


def default_output(loaded: LoadedTask, fmt: str) -> Path:
    """results/export/<run name>.<extension> (the checkpoint's stem without a run folder): never the
    working directory's root."""
    name = loaded.run_dir.name if loaded.run_dir is not None else loaded.checkpoint_path.stem
    return DEFAULT_OUTPUT_ROOT / f"{name}{DEFAULT_EXTENSIONS[fmt]}"


def export_loaded(loaded: LoadedTask, fmt: str, output: Path | None = None, size: tuple[int, int] | None = None, *,
                  opset: int = DEFAULT_OPSET, tolerance: float = TOLERANCE, note: str | None = None,
                  training_root: str | None = None) -> tuple[dict[str, Any], Path]:
    """Export a loaded task to `output` (default `default_output`); returns (model card, card path)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    size = size or loaded.preprocessing.image_size
    output = Path(output) if output is not None else default_output(loaded, fmt)
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
    card = model_card(loaded, size, info, output, note=note, training_root=training_root)
    card_path = output.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    split = loaded.split_path
    if fmt == "safetensors" and split is not None and split.is_file():
        # published weights carry their training split: cross-eval's unseen-only check needs it
        shutil.copyfile(split, output.with_suffix(".split.json"))
    return card, card_path

"""Load a trained run or checkpoint and predict full-resolution lesion probabilities for any image.

    from lesion_lightning.inference import load_predictor
    from lesion_lightning.metrics import binarize
    predictor = load_predictor("runs/demo/20260101-120000")      # a run folder or a .ckpt file
    probs = predictor.predict_probabilities([image])[0]           # (H, W) float32 at the image's size
    mask = binarize(probs, predictor.threshold)         # lesion where probability > threshold

What is loaded:
- the checkpoint: a run folder's best checkpoint (`checkpoints/best-*.ckpt`, the newest if there are
  several), else its `checkpoints/last.ckpt`, or the `.ckpt` file given;
- the task class: the `_class_path` LightningCLI stores in the checkpoint's hyperparameters, else the
  run's `config.yaml` `model.class_path`, else `SegmentationTask`. Any subclass of `SegmentationTask`
  works (its constructor receives the saved hyperparameters; its `state_dict` is loaded strictly);
- the preprocessing: working size and transform set (`data.image_size`, `data.augment`) from
  the datamodule hyperparameters saved in the checkpoint, else the run's `config.yaml`, else the
  model's paper input size with the `none` transform set (x / 255). The evaluation transform of that set
  (resize + normalise, exactly as in validation) is applied to each image.

The stages built on it: `images` (predict files into a folder), `explain` (Grad-CAM, activations) and
`export` (ONNX, TorchScript, safetensors + model card); `files` holds the one rule for image and mask files.

Security: checkpoints are read with `torch.load(weights_only=True)`, which only rebuilds tensors and
plain containers; a checkpoint that needs arbitrary pickled objects is refused unless the caller
passes `trust_checkpoint=True` (full unpickling can run any code: only for files you trust).
See docs/deployment.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names -> the submodule defining them. Loaded on first use, so that the light submodules
# (`files`, `export` constants) do not pull in torch for a command's `--help`.
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "LoadedTask": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_task": "checkpoint",
    "resolve_checkpoint": "checkpoint",
    "Predictor": "predictor",
    "load_predictor": "predictor",
    "pick_device": "predictor",
    "resize_probabilities": "predictor",
    "Preprocessing": "preprocessing",
    "normalisation_info": "preprocessing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

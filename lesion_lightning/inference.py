"""Load a trained run or checkpoint and predict full-resolution lesion probabilities for any image.

    from lesion_lightning.inference import load_predictor
    predictor = load_predictor("runs/demo/20260101-120000")      # a run folder or a .ckpt file
    probs = predictor.predict_probabilities([image])[0]           # (H, W) float32 at the image's size
    mask = probs >= predictor.threshold

What is loaded:
- the checkpoint: a run folder's best checkpoint (`checkpoints/best-*.ckpt`, the newest if there are
  several), else its `checkpoints/last.ckpt`, or the `.ckpt` file given;
- the task class: the `_class_path` LightningCLI stores in the checkpoint's hyperparameters, else the
  run's `config.yaml` `model.class_path`, else `SegmentationTask`. Any subclass of `SegmentationTask`
  works (its constructor receives the saved hyperparameters; its `state_dict` is loaded strictly);
- the preprocessing: working size and normalisation preset (`data.image_size`, `data.augment`) from
  the datamodule hyperparameters saved in the checkpoint, else the run's `config.yaml`, else the
  model's paper input size with the `none` preset (x / 255). The evaluation transform of that preset
  (resize + normalise, exactly as in validation) is applied to each image.

Security: checkpoints are read with `torch.load(weights_only=True)`, which only rebuilds tensors and
plain containers; a checkpoint that needs arbitrary pickled objects is refused unless the caller
passes `trust_checkpoint=True` (full unpickling can run any code: only for files you trust).
See docs/deployment.md.
"""

from __future__ import annotations

import importlib
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import yaml

from lesion_lightning.data.sizes import size_or_none
from lesion_lightning.data.transforms import DEFAULT_SIZES, IMAGENET_MEAN, IMAGENET_STD, PRESETS, build_transforms
from lesion_lightning.models.lesion_head import lesion_probabilities
from lesion_lightning.training.task import SegmentationTask

__all__ = [
    "CheckpointError",
    "Preprocessing",
    "Predictor",
    "resolve_checkpoint",
    "load_checkpoint",
    "load_task",
    "load_predictor",
    "normalisation_info",
]

DEFAULT_TASK_CLASS = "lesion_lightning.training.task.SegmentationTask"
# Keys LightningCLI adds to the saved hyperparameters that are not constructor arguments.
_CLI_KEYS = ("_class_path", "_instantiator")


class CheckpointError(RuntimeError):
    """A run folder or checkpoint that cannot be used; the message names the path."""


# -- locating and reading checkpoints ------------------------------------------------------------
def resolve_checkpoint(run_or_ckpt: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) for a run folder, its checkpoints/ folder or a .ckpt file."""
    path = Path(run_or_ckpt).expanduser()
    if not path.exists():
        raise CheckpointError(f"--ckpt {path}: no such run folder or checkpoint file")
    if path.is_file():
        if path.suffix != ".ckpt":
            raise CheckpointError(f"--ckpt {path}: expected a .ckpt file or a run folder")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        if run_dir is not None and not (run_dir / "config.yaml").exists():
            run_dir = None
        return path, run_dir
    ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    run_dir = ckpt_dir.parent if ckpt_dir.name == "checkpoints" else path
    best = sorted(ckpt_dir.glob("best*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if best:
        return best[-1], run_dir
    if (ckpt_dir / "last.ckpt").is_file():
        return ckpt_dir / "last.ckpt", run_dir
    others = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if others:
        return others[-1], run_dir
    raise CheckpointError(f"--ckpt {path}: no checkpoint found (looked for {ckpt_dir}/best-*.ckpt and last.ckpt)")


def load_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Read a Lightning checkpoint on the CPU, with `weights_only=True` unless `trust_checkpoint`."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: the checkpoint holds objects that weights_only loading refuses ({str(exc).splitlines()[0]}). "
            "Full unpickling can execute arbitrary code: only if you trust where this file comes from, "
            "load it with --trust-checkpoint (trust_checkpoint=True)."
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def _read_run_config(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return {}
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{run_dir / 'config.yaml'}: invalid YAML: {exc}") from exc


def _import_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise CheckpointError(f"task class {class_path!r}: expected a dotted path module.Class")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"task class {class_path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SegmentationTask)):
        raise CheckpointError(f"task class {class_path!r} is not a subclass of SegmentationTask")
    return cls


# -- preprocessing -------------------------------------------------------------------------------
def normalisation_info(preset: str) -> dict[str, Any]:
    """How a preset normalises images (for model cards and deployment outside Python)."""
    if preset == "medlitenet":
        return {"preset": preset, "kind": "mean_std", "scale": 1 / 255, "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD), "formula": "(x / 255 - mean) / std per RGB channel"}
    if preset == "slsnet":
        return {"preset": preset, "kind": "mean_std", "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3,
                "formula": "(x / 255 - 0.5) / 0.5, i.e. [-1, 1]"}
    if preset == "scsonet":
        return {"preset": preset, "kind": "min_max", "formula": "(x - min) / (max - min) over the whole image"}
    return {"preset": preset, "kind": "mean_std", "scale": 1 / 255, "mean": [0.0] * 3, "std": [1.0] * 3,
            "formula": "x / 255"}


@dataclass(frozen=True)
class Preprocessing:
    """Working size (H, W) and normalisation preset of a trained model."""

    image_size: tuple[int, int]
    preset: str = "none"
    source: str = "default"  # where the values came from (for messages and model cards)

    def transform(self):
        return build_transforms(self.preset, self.image_size, train=False, seed=0)

    def as_dict(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "layout": "NCHW float32 RGB",
                "resize": "area when shrinking, bilinear when enlarging", "source": self.source,
                "normalisation": normalisation_info(self.preset)}


def resolve_preprocessing(ckpt: dict[str, Any], run_config: dict[str, Any], model_name: str) -> Preprocessing:
    from lesion_lightning.models import get_model_spec

    for source, data in (("checkpoint datamodule hyperparameters", ckpt.get("datamodule_hyper_parameters")),
                         ("run config.yaml", run_config.get("data"))):
        if isinstance(data, dict) and size_or_none(data.get("image_size")) is not None:
            preset = data.get("augment") or "none"
            if preset not in PRESETS:
                raise CheckpointError(f"{source}: unknown augment preset {preset!r}")
            return Preprocessing(size_or_none(data["image_size"]), preset, source)
    try:
        _, h, w = get_model_spec(model_name).input_size
    except KeyError:
        h, w = DEFAULT_SIZES["none"]
    return Preprocessing((int(h), int(w)), "none", "model's paper input size (no data config found)")


# -- the task --------------------------------------------------------------------------------------
@dataclass
class LoadedTask:
    task: SegmentationTask
    checkpoint_path: Path
    run_dir: Path | None
    preprocessing: Preprocessing
    hparams: dict[str, Any]
    run_config: dict[str, Any] = field(default_factory=dict)
    class_path: str = DEFAULT_TASK_CLASS
    datamodule_hparams: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    global_step: int | None = None

    @property
    def model_name(self) -> str:
        return str(self.hparams.get("model", self.task.model_name))

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.hparams.get("model_kwargs") or {})

    @property
    def threshold(self) -> float:
        return float(self.task.threshold)


def load_task(run_or_ckpt: str | Path, *, trust_checkpoint: bool = False, device: str | torch.device = "cpu") -> LoadedTask:
    """Rebuild the trained task (in eval mode on `device`) with its preprocessing from a run or checkpoint."""
    ckpt_path, run_dir = resolve_checkpoint(run_or_ckpt)
    ckpt = load_checkpoint(ckpt_path, trust_checkpoint=trust_checkpoint)
    run_config = _read_run_config(run_dir)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    config_model = run_config.get("model") if isinstance(run_config.get("model"), dict) else {}
    if not hparams and config_model:
        hparams = dict(config_model.get("init_args") or {})
    class_path = hparams.get("_class_path") or config_model.get("class_path") or DEFAULT_TASK_CLASS
    cls = _import_class(str(class_path))
    init_args = {k: v for k, v in hparams.items() if k not in _CLI_KEYS}
    try:
        task = cls(**init_args)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{ckpt_path}: cannot rebuild {class_path} from the saved hyperparameters: {exc}") from exc
    try:
        task.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_path}: weights do not match {class_path}({init_args.get('model')!r}): {exc}") from exc
    task.eval().to(device)
    preprocessing = resolve_preprocessing(ckpt, run_config, str(init_args.get("model", task.model_name)))
    return LoadedTask(task=task, checkpoint_path=ckpt_path, run_dir=run_dir, preprocessing=preprocessing,
                      hparams=init_args, run_config=run_config, class_path=str(class_path),
                      datamodule_hparams=dict(ckpt.get("datamodule_hyper_parameters") or {}),
                      epoch=ckpt.get("epoch"), global_step=ckpt.get("global_step"))


# -- prediction ------------------------------------------------------------------------------------
def resize_probabilities(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (h, w) float32 probability map to (height, width)."""
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    if probs.shape == (height, width):
        return probs
    return cv2.resize(probs, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


class Predictor:
    """Full-resolution lesion probabilities from a loaded task: resize to the working size, normalise,
    predict (optionally with 6-fold TTA), resize the probabilities back to each image's size."""

    def __init__(self, loaded: LoadedTask, *, tta: bool = False, threshold: float | None = None,
                 device: str | torch.device | None = None) -> None:
        self.loaded = loaded
        self.device = torch.device(device) if device is not None else next(loaded.task.parameters()).device
        self.task = loaded.task.to(self.device).eval()
        self.preprocessing = loaded.preprocessing
        self.threshold = float(loaded.threshold if threshold is None else threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"--threshold must be in (0, 1), got {self.threshold}")
        self._local = threading.local()  # one albumentations pipeline per thread (decode threads)
        net = self.task.model
        if tta:
            from lesion_lightning.models.tta import TTAWrapper

            net = TTAWrapper(net)
        self.net = net.eval()
        self.tta = tta

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """(3, h, w) float32 tensor at the working size from an (H, W, 3) uint8 RGB image."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = self._local.transform = self.preprocessing.transform()
        return transform(image=image)["image"]

    @torch.inference_mode()
    def forward_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) lesion probabilities at the working size for a preprocessed batch."""
        logits = self.net(batch.to(self.device, non_blocking=True))
        return lesion_probabilities(logits.float())

    def predict_batch(self, tensors: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Full-size (H, W) float32 probabilities for preprocessed tensors and their original (H, W)."""
        probs = self.forward_batch(torch.stack(list(tensors))).cpu().numpy()[:, 0]
        return [resize_probabilities(p, h, w) for p, (h, w) in zip(probs, sizes)]

    def predict_probabilities(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            out += self.predict_batch([self.preprocess(im) for im in chunk], [im.shape[:2] for im in chunk])
        return out

    def predict_masks(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Full-size (H, W) uint8 {0, 1} masks (probability >= threshold)."""
        return [(p >= self.threshold).astype(np.uint8) for p in self.predict_probabilities(images, batch_size)]


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_predictor(run_or_ckpt: str | Path, *, tta: bool = False, threshold: float | None = None,
                   device: str | None = None, trust_checkpoint: bool = False) -> Predictor:
    """`load_task` + `Predictor` in one call."""
    loaded = load_task(run_or_ckpt, trust_checkpoint=trust_checkpoint, device=pick_device(device))
    return Predictor(loaded, tta=tta, threshold=threshold)

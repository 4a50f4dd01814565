"""Full-resolution lesion probabilities for any image from a loaded task (`Predictor`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from lesion_lightning.inference.checkpoint import LoadedTask, load_task
from lesion_lightning.metrics import binarize
from lesion_lightning.models.lesion_head import lesion_probabilities


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
                 device: str | torch.device | None = None, backend: str = "eager",
                 cache_dir: Path | None = None) -> None:
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
        self.onnx = None
        self.backend_note = "eager PyTorch"
        if backend != "eager":
            self._use_onnx(backend, cache_dir)

    def _use_onnx(self, backend: str, cache_dir: Path | None) -> None:
        """Run the network through ONNX Runtime (`backend` onnx, or auto where the export verifies)."""
        from lesion_lightning.inference.onnx_backend import BACKENDS, OnnxUnavailable, onnx_net

        if backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if self.tta or self.device.type != "cpu":
            why = "--tta runs in PyTorch" if self.tta else f"ONNX Runtime is used on CPU only (device {self.device})"
            if backend == "onnx":
                raise ValueError(f"--backend onnx: {why}")
            self.backend_note = f"eager PyTorch ({why})"
            return
        if cache_dir is None:
            from lesion_lightning.data.cache import default_cache_dir

            cache_dir = default_cache_dir()
        try:
            self.onnx = onnx_net(self.task.model, self.loaded.checkpoint_path, self.preprocessing.image_size,
                                 cache_dir)
        except (OnnxUnavailable, ImportError, OSError) as exc:
            if backend == "onnx":
                raise ValueError(f"--backend onnx: this model cannot run through ONNX Runtime: {exc}") from exc
            self.backend_note = f"eager PyTorch (ONNX Runtime not used: {exc})"
            return
        self.backend_note = "ONNX Runtime (verified export, cached)"

    def describe(self) -> str:
        """One line: the model, its checkpoint, working size, normalisation, threshold and TTA."""
        loaded, pre = self.loaded, self.preprocessing
        return (f"model {loaded.model_name} ({loaded.class_path.rsplit('.', 1)[-1]}) from {loaded.checkpoint_path}; "
                f"working size {pre.image_size[0]}x{pre.image_size[1]}, transform set {pre.transform_set!r}, "
                f"threshold {self.threshold}{', TTA x6' if self.tta else ''}; backend {self.backend_note}")

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
        if self.onnx is not None:
            return self.onnx(batch)
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
        """Full-size (H, W) uint8 {0, 1} masks (`metrics.binarize`: probability > threshold)."""
        return [binarize(p, self.threshold).astype(np.uint8) for p in self.predict_probabilities(images, batch_size)]


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_predictor(run_or_ckpt: str | Path, *, tta: bool = False, threshold: float | None = None,
                   device: str | None = None, trust_checkpoint: bool = False, backend: str = "eager") -> Predictor:
    """`load_task` + `Predictor` in one call."""
    loaded = load_task(run_or_ckpt, trust_checkpoint=trust_checkpoint, device=pick_device(device))
    return Predictor(loaded, tta=tta, threshold=threshold, backend=backend)


def open_predictor(ckpt: str | Path, *, device: str | None = None, trust_checkpoint: bool = False,
                   **options) -> Predictor:
    """`load_predictor` for a command line: any failure is a `CheckpointError` whose message names `--ckpt`
    (or `--device`), ready to print in one line."""
    from lesion_lightning.inference.checkpoint import CheckpointError

    try:
        return load_predictor(ckpt, device=device, trust_checkpoint=trust_checkpoint, **options)
    except (CheckpointError, ValueError) as exc:
        raise CheckpointError(str(exc) if str(ckpt) in str(exc) else f"--ckpt {ckpt}: {exc}") from exc
    except (RuntimeError, AssertionError) as exc:  # e.g. --device cuda without a GPU
        raise CheckpointError(f"cannot load --ckpt {ckpt} on --device {device}: {exc}") from exc

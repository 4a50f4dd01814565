"""Inference latency of one model at one input shape: eager PyTorch, torch.compile or ONNX Runtime.

Timing rules (what `lesion-lightning bench` reports):

* the model is in eval mode and every call runs under ``torch.inference_mode()``;
* ``warmup`` untimed calls first (they absorb lazy initialisation, cuDNN autotuning and, for
  ``compile``, the compilation itself), then ``repeats`` timed calls of one forward pass each;
* CPU: wall time of each call with ``time.perf_counter``; CUDA: a pair of CUDA events around each
  call, read after ``torch.cuda.synchronize()``, so the time is the GPU's, not the launch's;
* ONNX Runtime: the model is exported once to a temporary ``.onnx`` file, and ``session.run`` is
  timed with ``time.perf_counter`` (CUDA provider when the device is cuda and it is available);
* the headline is the **median** of the repeats (robust to the odd slow call on a shared machine);
  FPS = batch * 1000 / median_ms.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["BACKENDS", "DEVICES", "LatencyResult", "measure_latency", "check_backend_available"]

BACKENDS = ("eager", "compile", "onnxruntime")
DEVICES = ("cpu", "cuda")


@dataclass
class LatencyResult:
    backend: str
    device: str
    batch: int
    input_shape: tuple[int, ...]
    repeats: int
    warmup: int
    times_ms: list[float] = field(default_factory=list)
    provider: str | None = None  # ONNX Runtime execution provider

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.times_ms))

    @property
    def mean_ms(self) -> float:
        return float(statistics.fmean(self.times_ms))

    @property
    def std_ms(self) -> float:
        return float(statistics.pstdev(self.times_ms)) if len(self.times_ms) > 1 else 0.0

    @property
    def min_ms(self) -> float:
        return float(min(self.times_ms))

    @property
    def fps(self) -> float:
        """Images per second at the median latency."""
        return self.batch * 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d.update(median_ms=self.median_ms, mean_ms=self.mean_ms, std_ms=self.std_ms, min_ms=self.min_ms,
                 fps=self.fps)
        return d


def check_backend_available(backend: str, device: str) -> None:
    """Raise ValueError/RuntimeError naming the option when `backend`/`device` cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend: unknown {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ValueError(f"--device: unknown {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available on this machine (use --device cpu)")
    if backend == "onnxruntime":
        for module in ("onnx", "onnxruntime"):
            try:
                __import__(module)
            except ImportError as err:
                raise RuntimeError(f"--backend onnxruntime needs the {module!r} package "
                                   f"(pip install onnx onnxruntime): {err}") from err


def _time_torch(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times: list[float] = []
    if device.type == "cuda":
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(float(start.elapsed_time(end)))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _onnx_session(model: nn.Module, example: torch.Tensor, folder: Path, device: str):
    import onnxruntime as ort

    path = folder / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        # The legacy TorchScript exporter: no onnxscript dependency, and it handles every model here.
        torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["logits"],
                          opset_version=17, dynamo=False)
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch: int = 1,
    device: str = "cpu",
    backend: str = "eager",
    repeats: int = 20,
    warmup: int = 5,
) -> LatencyResult:
    """Latency of one forward pass of `model` on a (batch, C, H, W) input of zeros-plus-noise.

    The model is moved to `device` and put in eval mode (left there). Raises ValueError for bad
    options (naming them) and RuntimeError when the backend/device is not usable here.
    """
    if repeats < 1:
        raise ValueError(f"--repeats: must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"--warmup: must be >= 0, got {warmup}")
    if batch < 1:
        raise ValueError(f"--batch: must be at least 1, got {batch}")
    check_backend_available(backend, device)
    dev = torch.device(device)
    model = model.to(dev).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((batch, *input_shape), generator=generator).to(dev)
    result = LatencyResult(backend, device, batch, (batch, *input_shape), repeats, warmup)
    if backend == "onnxruntime":
        with tempfile.TemporaryDirectory(prefix="lesion-bench-onnx-") as tmp:
            session = _onnx_session(model.cpu(), x.cpu(), Path(tmp), device)
            feed = {"image": x.cpu().numpy()}
            result.provider = session.get_providers()[0]
            for _ in range(warmup):
                session.run(None, feed)
            for _ in range(repeats):
                t0 = time.perf_counter()
                session.run(None, feed)
                result.times_ms.append((time.perf_counter() - t0) * 1000.0)
        model.to(dev)
        return result
    runner: Callable[[torch.Tensor], Any] = model
    if backend == "compile":
        runner = torch.compile(model)
        # The first call compiles: never time it.
        result.warmup = warmup = max(warmup, 1)
    with torch.inference_mode():
        result.times_ms = _time_torch(lambda: runner(x), dev, repeats, warmup)
    return result

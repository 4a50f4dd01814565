"""`predict` end to end, eager PyTorch vs ONNX Runtime, for LANET, SCSONet and SLSNet (issue 14).

For each model: a freshly initialised checkpoint at its paper size (weights do not change the cost, but
they can decide whether SCSONet's export verifies), one Predictor per backend (`predict --backend eager`
and `--backend onnx`: exported once into a temporary cache, verified), the same images predicted end to
end (decode, preprocess, network, resize back, threshold, write masks and overlays) alternately, median
of `--repeats`. Prints the throughput ratio onnx / eager (target >= 1.5) and the mask agreement
(pixels that differ / total) between the two backends' written masks.

    .venv/bin/python benchmarks/predict_backends.py [--models lanet,scsonet,slsnet] [--images 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from predict_throughput import _images

from lesion_lightning.inference import load_task
from lesion_lightning.inference.images import predict_files
from lesion_lightning.inference.predictor import Predictor
from lesion_lightning.models import get_model_spec
from lesion_lightning.training.task import SegmentationTask


def _checkpoint(name: str, folder: Path) -> Path:
    torch.manual_seed(0)
    task = SegmentationTask(model=name)
    size = get_model_spec(name).input_size[1]
    ckpt = folder / f"{name}.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "datamodule_hyper_parameters": {"image_size": size, "augment": "none"}}, ckpt)
    return ckpt


def _agreement(a: Path, b: Path) -> tuple[int, int]:
    differ = total = 0
    for p in sorted(a.glob("*_segmentation.png")):
        x, y = np.asarray(Image.open(p)), np.asarray(Image.open(b / p.name))
        differ, total = differ + int((x != y).sum()), total + x.size
    return differ, total


def measure(name: str, files: list[Path], tmp: Path, args: argparse.Namespace) -> str:
    ckpt = _checkpoint(name, tmp)
    predictors = {b: Predictor(load_task(ckpt), backend=b, cache_dir=tmp / "cache") for b in ("eager", "auto")}
    if predictors["auto"].onnx is None:
        return f"{name:<8} ONNX Runtime not used: {predictors['auto'].backend_note}"
    rates: dict[str, list[float]] = {"eager": [], "auto": []}
    for _ in range(args.repeats + 1):  # the first round warms up
        for backend, predictor in predictors.items():
            out = tmp / f"{name}-{backend}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            predict_files(predictor, files, out, batch_size=args.batch_size, progress=False)
            rates[backend].append(len(files) / (time.perf_counter() - start))
    eager, onnx = (statistics.median(rates[b][1:]) for b in ("eager", "auto"))
    differ, total = _agreement(tmp / f"{name}-eager", tmp / f"{name}-auto")
    size = get_model_spec(name).input_size[1]
    return (f"{name:<8} {size:>4}  eager {eager:7.2f} img/s  onnx {onnx:7.2f} img/s  ratio {onnx / eager:5.2f}  "
            f"masks differ {differ}/{total} px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lanet,scsonet,slsnet")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="predict_backends_"))
    try:
        files = _images(tmp, args.images)
        print(f"predict end to end, eager vs ONNX Runtime: {len(files)} images 600x450, batch {args.batch_size}, "
              f"torch/ORT threads {args.threads}, median of {args.repeats} (target ratio >= 1.5)")
        for name in args.models.split(","):
            print(measure(name, files, tmp, args), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`predict` end-to-end throughput vs model-only throughput on the same images.

End-to-end = what `lesion-lightning predict` does per image: decode the file, resize + normalise to the
working size, forward pass (in batches), resize the probabilities back to the original size,
threshold, write the mask PNG and the overlay PNG, compute the CSV statistics. Model-only = the
forward passes alone on the same images, already decoded and preprocessed, same batch size.

Both are measured alternately in one run (median of `--repeats`), and the ratio printed
(target: end-to-end / model-only >= 0.7). Images: the real HAM10000 sample (600x450 JPEG) from
../shared/data, else synthetic 600x450 JPEGs. The model is freshly initialised (weights do not change
the cost) and saved as a checkpoint, so loading goes through `lesion_lightning.inference` as in use.

    .venv/bin/python benchmarks/predict_throughput.py [--model lanet] [--size 224] [--images 30] [--batch-size 4] [--threads 1]
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

from lesion_lightning.inference.images import predict_files
from lesion_lightning.inference import load_predictor
from lesion_lightning.models import get_model_spec
from lesion_lightning.paths import sample_dataset_root
from lesion_lightning.training.task import SegmentationTask


def _images(folder: Path, n: int) -> list[Path]:
    root = sample_dataset_root("ham10000")
    files = sorted((root / "HAM10000_images_part_1").glob("*.jpg"))[:n] if root is not None else []
    if len(files) < n:  # synthetic stand-ins with the HAM10000 size
        import cv2

        rng = np.random.default_rng(0)
        for i in range(n - len(files)):
            p = folder / f"synthetic_{i:03d}.jpg"
            img = cv2.GaussianBlur(rng.integers(0, 255, (450, 600, 3), dtype=np.uint8), (0, 0), 5)
            cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            files.append(p)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lanet")
    parser.add_argument("--size", type=int, default=None, help="working size (default: the model's paper size)")
    parser.add_argument("--images", type=int, default=30,
                        help="images (default 30: the whole HAM10000 sample; with fewer, start-up and the last "
                             "batch's writes weigh more)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="decode/write threads of the predict pipeline")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared machine, where spinning "
                             "OpenMP threads of a busy CPU distort timings)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    size = args.size or get_model_spec(args.model).input_size[1]
    tmp = Path(tempfile.mkdtemp(prefix="predict_bench_"))
    try:
        torch.manual_seed(0)
        task = SegmentationTask(model=args.model)
        ckpt = tmp / "model.ckpt"
        torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                    "datamodule_hyper_parameters": {"image_size": size, "augment": "none"}}, ckpt)
        predictor = load_predictor(ckpt, device="cpu")
        files = _images(tmp, args.images)
        from lesion_lightning.data.io import load_image

        tensors = [predictor.preprocess(load_image(p)) for p in files]
        batches = [torch.stack(tensors[i:i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]

        def model_only() -> float:
            start = time.perf_counter()
            for b in batches:
                predictor.forward_batch(b)
            return len(files) / (time.perf_counter() - start)

        def end_to_end(overlay: bool) -> float:
            out = tmp / f"out_{overlay}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            report = predict_files(predictor, files, out, batch_size=args.batch_size, overlay=overlay,
                                   workers=args.workers, progress=False)
            elapsed = time.perf_counter() - start
            assert len(report.rows) == len(files) and not report.skipped
            return len(files) / elapsed

        model_only()  # warm-up (allocator, oneDNN kernels)
        end_to_end(True)
        m, e, e_nov = [], [], []
        for _ in range(args.repeats):
            m.append(model_only())
            e.append(end_to_end(True))
            e_nov.append(end_to_end(False))
        mo, ee, en = statistics.median(m), statistics.median(e), statistics.median(e_nov)
        print(f"predict throughput: {args.model} at {size}x{size}, {len(files)} images "
              f"({'HAM10000 sample' if 'synthetic' not in files[0].name else 'synthetic'} 600x450 JPEG), "
              f"batch {args.batch_size}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
        print(f"  model only                                   {mo:8.2f} img/s")
        print(f"  end to end (decode..write masks + overlays)  {ee:8.2f} img/s")
        print(f"  end to end (masks + CSV, --no-overlay)       {en:8.2f} img/s")
        print(f"ratio end-to-end / model-only: {ee / mo:.3f} (masks only: {en / mo:.3f}; target >= 0.7)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Eager PyTorch vs ONNX Runtime inference latency per registered model, at its paper input size.

For each model: the probability model that `lesion-lightning export --format onnx` writes (architecture
+ sigmoid/softmax), exported at the paper's (1, 3, H, W) with a fixed shape (the TorchScript-based
exporter; the dynamo exporter where that one lacks an op), checked against PyTorch (max abs diff),
then timed batch 1 on the CPU, eager and ONNX Runtime alternately (median of `--repeats`), with the
same number of threads (`--threads`, default 1). Prints the latency ratio eager / ONNX Runtime (> 1: ONNX Runtime is faster).

A `--time-budget` (seconds, default 110) keeps the default run short: models not reached in time are
listed as not measured; `--models a,b` or `--time-budget 0` (no limit) measures them.

    .venv/bin/python benchmarks/onnx_vs_eager.py [--models lanet,egeunet] [--repeats 5] [--time-budget 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lesion_lightning.inference.export_checks import TOLERANCE, probability_model
from lesion_lightning.inference.onnx_export import conditioning_note, write_onnx
from lesion_lightning.models import create_model, get_model_spec, list_models


def _export(model: torch.nn.Module, path: Path, size: tuple[int, int]) -> str:
    try:
        write_onnx(model, path, size, 17, (), "torchscript")
        return "torchscript"
    except Exception:  # e.g. adaptive pooling the TorchScript-based exporter cannot size
        write_onnx(model, path, size, 18, (), "dynamo")
        return "dynamo"


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="comma-separated model names (default: all registered)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--time-budget", type=float, default=110.0, help="seconds; 0 = no limit")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of both runtimes (default 1: stable on a shared machine, where "
                             "spinning OpenMP threads of a busy CPU distort timings)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import onnxruntime as ort

    names = args.models.split(",") if args.models else list_models()
    threads = args.threads
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    print(f"eager vs ONNX Runtime {ort.__version__}, batch 1, CPU, {threads} threads, median of {args.repeats}")
    print(f"{'model':<22}{'input':>10}{'exporter':>13}{'max|diff|':>11}{'eager ms':>10}{'ORT ms':>9}{'eager/ORT':>11}")
    started = time.perf_counter()
    ratios, skipped, notes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if args.time_budget and time.perf_counter() - started > args.time_budget:
                skipped.append(name)
                continue
            _, h, w = get_model_spec(name).input_size
            torch.manual_seed(0)
            model = probability_model(create_model(name)).eval()
            path = Path(tmp) / f"{name}.onnx"
            try:
                exporter = _export(model, path, (h, w))
            except Exception as exc:
                print(f"{name:<22}{f'{h}x{w}':>10}  export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
                continue
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
            feed = {"image": x.numpy()}
            with torch.inference_mode():
                ref = model(x).numpy()
            diff = float(np.abs(session.run(None, feed)[0] - ref).max())
            if diff > TOLERANCE:
                notes.append(f"{name}: max abs diff {diff:.2g} > {TOLERANCE:g}"
                             + conditioning_note(model, x, torch.from_numpy(ref), TOLERANCE))

            def eager():
                with torch.inference_mode():
                    model(x)

            def onnx():
                session.run(None, feed)

            eager(), onnx()  # warm-up
            e, o = [], []
            for _ in range(args.repeats):  # alternate, so both see the same machine load
                e.append(_median_ms(eager, 1))
                o.append(_median_ms(onnx, 1))
            e_ms, o_ms = statistics.median(e), statistics.median(o)
            ratios.append(e_ms / o_ms)
            print(f"{name:<22}{f'{h}x{w}':>10}{exporter:>13}{diff:>11.1e}{e_ms:>10.1f}{o_ms:>9.1f}{e_ms / o_ms:>11.2f}",
                  flush=True)
    if ratios:
        print(f"geometric mean eager/ORT over {len(ratios)} model(s): {float(np.exp(np.mean(np.log(ratios)))):.2f}")
    for note in notes:
        print(f"note: {note}")
    if skipped:
        print(f"not measured (time budget {args.time_budget:g} s): {', '.join(skipped)} "
              f"(run with --models {','.join(skipped)} or --time-budget 0)")


if __name__ == "__main__":
    main()

"""GPU figures beside the papers': inference latency/FPS and training throughput per seed model.

For each model at its paper input size: batch-1 inference latency and FPS in FP32 and under FP16 (or
bf16) autocast, eager and `torch.compile`d; training images/s with autocast + GradScaler (what
`--amp=true` does through Lightning's 16-mixed) at batch 8; and the peak GPU memory of each phase.
Prints one table and writes JSON with `--out`. Papers: SLSNet 110 FPS at 128 on a GTX 1080 Ti; MedLiteNet
about 1 ms per 256x256 image in FP16 on an RTX A6000 (23 ms with 6-fold TTA); SCSONet trains in 0.6 GB.

    .venv/bin/python benchmarks/gpu_figures.py --out results/bench/gpu_figures.json     # on a CUDA machine, < 10 min
    .venv/bin/python benchmarks/gpu_figures.py --device cpu --quick                     # checks the script itself

No GPU was lent to the task that wrote this script: it has been run on CPU only (`--device cpu --quick`,
in the tests), so docs/evaluation.md has no GPU figures of ours yet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from lesion_lightning.models import create_model, get_model_spec

SEED_MODELS = ("lanet", "scsonet", "slsnet", "medlitenet", "unet_aksoy")
PAPER = {"slsnet": "110 FPS at 128x128 (GTX 1080 Ti)", "medlitenet": "~1 ms per 256x256 image, FP16 (RTX A6000); 23 ms with 6-fold TTA",
         "scsonet": "trains in 0.6 GB of GPU memory"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _time(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of one call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference_rows(name: str, model: torch.nn.Module, size: tuple[int, int], device: torch.device,
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    x = torch.rand(1, 3, *size, device=device)
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    rows = []
    for compiled in (False, True) if not args.no_compile else (False,):
        net = torch.compile(model) if compiled else model
        for precision in ("fp32", "fp16" if device.type == "cuda" else "bf16"):
            def forward() -> None:
                with torch.no_grad(), torch.autocast(device.type, dtype=half, enabled=precision != "fp32"):
                    net(x)
            _peak_reset(device)
            seconds = _time(forward, device, args.warmup, args.repeats)
            rows.append({"model": name, "phase": "inference", "size": list(size), "precision": precision,
                         "compiled": compiled, "ms": round(1000 * seconds, 3), "fps": round(1 / seconds, 1),
                         "peak_mb": _peak_mb(device)})
    return rows


def training_row(name: str, model: torch.nn.Module, size: tuple[int, int], device: torch.device,
                 args: argparse.Namespace) -> dict[str, Any]:
    model.train()
    x = torch.rand(args.batch_size, 3, *size, device=device)
    y = (torch.rand(args.batch_size, 1, *size, device=device) > 0.5).float()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, :1].float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    _peak_reset(device)
    seconds = _time(step, device, args.warmup, args.repeats)
    model.eval()
    return {"model": name, "phase": "training", "size": list(size), "precision": "16-mixed" if amp else "fp32",
            "batch": args.batch_size, "images_per_s": round(args.batch_size / seconds, 1),
            "peak_mb": _peak_mb(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", default=",".join(SEED_MODELS))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--quick", action="store_true", help="2 repeats, 64 px, no compile: checks the script")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device here (use --device cpu --quick to check the script)")
    if args.quick:
        args.warmup, args.repeats, args.no_compile, args.batch_size = 1, 2, True, 2
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        _, h, w = get_model_spec(name).input_size
        size = (64, 64) if args.quick else (h, w)
        model = create_model(name).to(device).eval()
        rows += inference_rows(name, model, size, device, args)
        rows.append(training_row(name, model, size, device, args))
        for row in rows[-1:]:
            row["paper"] = PAPER.get(name, "")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for r in rows:
        figure = f"{r['ms']} ms, {r['fps']} FPS" if r["phase"] == "inference" else f"{r['images_per_s']} img/s"
        print(f"{r['model']:<12} {r['phase']:<9} {'x'.join(map(str, r['size'])):<8} {r['precision']:<8} "
              f"{'compiled' if r.get('compiled') else 'eager':<8} {figure:<24} peak {r['peak_mb'] or '-'} MB "
              f"{r.get('paper', '')}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": str(device), "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

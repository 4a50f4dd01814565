"""The efficiency benchmark (`lesion-lightning bench`): latency, FPS, parameters and MACs per model and size.

The efficiency table of SLSNet (Table 5: latency ms / FPS / MACs(G) at 64, 128 and 256 px) and the
complexity table of LANET (Table 4: parameters, memory, GFLOPs at 224 px), measured on this
machine and written beside the papers' printed figures.

For each model (built with its registry defaults) and each square size S, at input (batch, 3, S, S):

* params, MACs and latency come from the one model cost report,
  `lesion_lightning.utils.complexity.measure_complexity` (torch FlopCounterMode, batch 1, one MAC = 2
  FLOPs), the same numbers as `lesion-lightning complexity` and `models`;
* latency is the median of `--repeats` timed forward passes after `--warmup` untimed ones
  (`lesion_lightning.utils.latency`): `time.perf_counter` under `torch.inference_mode` on CPU, CUDA
  events + synchronize on a GPU; FPS = batch * 1000 / median ms.

The papers timed on GPUs (SLSNet: a GTX 1080Ti): latencies measured on a CPU are not comparable with
their figures, and every output says so. Outputs: `bench.json`, `bench.csv`, `bench.md` in
`--output` (default results/bench) and a table on the terminal (`--json`: the JSON document on
stdout instead). Exit status 0; 1 when a model failed at some size (its row says why); 2 for bad
options.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when the benchmark runs: `--help` stays fast
    from lesion_lightning.utils.complexity import LatencySettings

DEFAULT_MODELS = "slsnet,lanet"
DEFAULT_SIZES = "64,128,256"
DEFAULT_OUTPUT = Path("results") / "bench"

# SLSNet (Sarker et al., ESWA 2021) Table 5, transcribed from ../shared/papers/002_0b47992e26efa902.txt:
# size -> (latency ms, FPS, MACs(G)), on a single GTX 1080Ti.
SLSNET_TABLE5_SOURCE = "SLSNet (Sarker et al., ESWA 2021) Table 5, GTX 1080Ti"
SLSNET_TABLE5: dict[str, dict[int, tuple[float, float, float]]] = {
    "GAN-FCN (Bi et al., 2018)": {64: (9, 120.64, 0.37), 128: (14, 87.62, 1.51), 256: (21, 57.15, 6.06)},
    "ENet (Paszke et al., 2016)": {64: (2, 273.65, 0.03), 128: (3, 136.84, 0.13), 256: (7, 91.29, 0.50)},
    "Proposed SLSNet": {64: (5, 168.71, 0.23), 128: (8, 110.3, 0.90), 256: (14, 78.63, 3.16)},
}
# registered model -> its row of SLSNet Table 5 (the other rows are paper-only: we do not implement them)
SLSNET_TABLE5_ROWS = {"slsnet": "Proposed SLSNet"}

# LANET (Khalaf et al., CMES 2026) Table 4, transcribed from ../shared/papers/000_07d483c125ec6a5c.txt:
# params (million), number of layers, memory size (MB), GFLOPs at 224x224 (one MAC = two FLOPs).
LANET_TABLE4_SOURCE = "LANET (Khalaf et al., CMES 2026) Table 4, 224x224"
LANET_TABLE4_SIZE = 224
LANET_TABLE4: dict[str, tuple[str, float, int, float, float]] = {
    # registered model: (row name in the paper, params M, layers, memory MB, GFLOPs)
    "unet": ("U-Net [5]", 31, 70, 118.3, 7.42),
    "unetplusplus": ("U-Net++ [6]", 36.2, 116, 138.1, 8.45),
    "unet3plus": ("U-Net+3 [30]", 26.9, 92, 102.6, 6.80),
    "lanet": ("LANET", 0.846, 136, 3.2, 4.22),
}

CPU_NOTE = ("Latencies measured on a CPU are not comparable with the papers' GPU figures (SLSNet Table 5: "
            "GTX 1080Ti); compare MACs/params across papers, latencies only between rows of this table.")


def parse_models(text: str) -> list[str]:
    from lesion_lightning.models import list_models

    wanted = [n.strip() for n in text.split(",") if n.strip()]
    if not wanted:
        raise ValueError("--models: no model name given")
    available = list_models()
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {', '.join(unknown)}; registered: {', '.join(available)}")
    return list(dict.fromkeys(wanted))


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise ValueError(f"--sizes: {part!r} is not an integer pixel size (e.g. --sizes 64,128,256)") from None
        if value < 8 or value > 4096:
            raise ValueError(f"--sizes: {value} is out of range (8..4096 pixels)")
        sizes.append(value)
    if not sizes:
        raise ValueError("--sizes: no size given")
    return list(dict.fromkeys(sizes))


def paper_figures(model: str, size: int) -> dict[str, Any]:
    """The papers' printed efficiency figures for `model` at `size` (empty values where none)."""
    out: dict[str, Any] = {"paper_ms": None, "paper_fps": None, "paper_gmacs": None, "paper_params_m": None,
                           "paper_gflops": None, "paper_memory_mb": None, "paper_source": ""}
    sources = []
    row = SLSNET_TABLE5_ROWS.get(model)
    if row is not None:
        out["paper_params_m"] = 2.35  # SLSNet abstract/conclusion: "2.35 million parameters"
        sources.append("SLSNet abstract (params)")
        if size in SLSNET_TABLE5[row]:
            out["paper_ms"], out["paper_fps"], out["paper_gmacs"] = SLSNET_TABLE5[row][size]
            sources.append(SLSNET_TABLE5_SOURCE)
    if model in LANET_TABLE4:
        _, params_m, _, memory_mb, gflops = LANET_TABLE4[model]
        out["paper_params_m"], out["paper_memory_mb"] = params_m, memory_mb
        if size == LANET_TABLE4_SIZE:
            out["paper_gflops"] = gflops
        sources.append(LANET_TABLE4_SOURCE)
    out["paper_source"] = "; ".join(sources)
    return out


def paper_only_rows() -> list[dict[str, Any]]:
    """SLSNet Table 5 rows of models we do not implement (printed for context)."""
    rows = []
    for name, by_size in SLSNET_TABLE5.items():
        if name in SLSNET_TABLE5_ROWS.values():
            continue
        for size, (ms, fps, gmacs) in by_size.items():
            rows.append({"model": name, "size": size, "paper_ms": ms, "paper_fps": fps, "paper_gmacs": gmacs,
                         "paper_source": SLSNET_TABLE5_SOURCE})
    return rows


def bench_model(name: str, sizes: list[int], settings: LatencySettings) -> list[dict[str, Any]]:
    """One row per size for model `name` (its cost report, with latency); a failure at one size is that
    row's `error`."""
    import torch

    from lesion_lightning.models import create_model, get_model_spec
    from lesion_lightning.utils.complexity import measure_complexity

    channels = get_model_spec(name).input_size[0]
    head = {"model": name, "batch": settings.batch, "backend": settings.backend, "device": settings.device}
    try:
        model = create_model(name).eval()
    except Exception as err:  # one broken model must not hide the others
        return [{**head, "size": s, **paper_figures(name, s), "error": f"cannot build: {type(err).__name__}: {err}"}
                for s in sizes]
    rows = []
    for size in sizes:
        row: dict[str, Any] = {**head, "size": size}
        try:
            with torch.no_grad():
                c = measure_complexity(model.cpu(), (channels, size, size), settings)
            lat = c.latency
            row.update(params=c.params, macs=c.macs, flops=c.flops, gmacs=c.macs / 1e9, median_ms=lat.median_ms,
                       mean_ms=lat.mean_ms, std_ms=lat.std_ms, min_ms=lat.min_ms, fps=lat.fps, times_ms=lat.times_ms,
                       warmup=lat.warmup, repeats=lat.repeats)
            if lat.provider:
                row["provider"] = lat.provider
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        row.update(paper_figures(name, size))
        rows.append(row)
    return rows


def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
    }
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def check_settings(settings: LatencySettings, threads: int | None) -> None:
    """ValueError/RuntimeError naming the option that cannot work here."""
    from lesion_lightning.utils.latency import check_backend_available

    check_backend_available(settings.backend, settings.device)
    for option, value, least in (("--repeats", settings.repeats, 1), ("--warmup", settings.warmup, 0),
                                 ("--batch", settings.batch, 1), ("--threads", threads, 1)):
        if value is not None and value < least:
            raise ValueError(f"{option}: must be at least {least}, got {value}")


def run_bench(models: list[str], sizes: list[int], settings: LatencySettings, threads: int | None = None
              ) -> dict[str, Any]:
    """Benchmark every model at every size; returns the document (settings, environment, rows, paper rows)."""
    import torch

    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for name in models:
            print(f"benchmarking {name} at {', '.join(map(str, sizes))} px ...", file=sys.stderr)
            rows.extend(bench_model(name, sizes, settings))
        env = environment(settings.device)
    finally:
        torch.set_num_threads(threads_before)  # leave the process as found (tests run in-process)
    return {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {"models": models, "sizes": sizes, "device": settings.device, "batch": settings.batch,
                     "backend": settings.backend, "repeats": settings.repeats, "warmup": settings.warmup},
        "environment": env,
        "note": CPU_NOTE if settings.device == "cpu" else "",
        "rows": rows,
        "paper_only": paper_only_rows(),
        "sources": {"slsnet_table5": SLSNET_TABLE5_SOURCE, "lanet_table4": LANET_TABLE4_SOURCE},
    }

"""`lesion-lightning bench`: inference latency, FPS, parameters and MACs per model and input size.

The efficiency table of SLSNet (Table 5: latency ms / FPS / MACs(G) at 64, 128 and 256 px) and the
complexity table of LANET (Table 4: parameters, memory, GFLOPs at 224 px), measured on this
machine and written beside the papers' printed figures.

For each model (built with its registry defaults) and each square size S, at input (batch, 3, S, S):

* params and MACs come from `lesion_lightning.utils.complexity.measure_complexity` (torch
  FlopCounterMode, batch 1, one MAC = 2 FLOPs), the same numbers as `lesion-lightning complexity`;
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

import argparse
import csv
import datetime as _dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

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

CSV_COLUMNS = ("model", "size", "batch", "backend", "device", "median_ms", "mean_ms", "std_ms", "min_ms", "fps",
               "params", "macs", "flops", "gmacs", "paper_ms", "paper_fps", "paper_gmacs", "paper_params_m",
               "paper_gflops", "paper_memory_mb", "paper_source", "error")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=DEFAULT_MODELS, metavar="A,B,...",
                        help=f"comma-separated registered model names (default {DEFAULT_MODELS}; "
                        "see `lesion-lightning models`)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, metavar="S,...",
                        help=f"comma-separated square input sizes in pixels (default {DEFAULT_SIZES})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1, as the papers)")
    parser.add_argument("--backend", default="eager",
                        help="eager (default), compile (torch.compile; compiling takes a while on CPU) or "
                        "onnxruntime (export to a temporary .onnx, run with ONNX Runtime)")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes; the median is reported (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed forward passes first (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's default for this machine)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"folder for bench.json/.csv/.md (default {DEFAULT_OUTPUT})")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of the table")


# ----------------------------------------------------------------------------------------------
# options


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


# ----------------------------------------------------------------------------------------------
# paper figures


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


# ----------------------------------------------------------------------------------------------
# measuring


def bench_model(name: str, sizes: list[int], *, batch: int, device: str, backend: str, repeats: int,
                warmup: int) -> list[dict[str, Any]]:
    """One row per size for model `name`; a failure at one size is that row's `error`."""
    import torch

    from lesion_lightning.models import create_model, get_model_spec
    from lesion_lightning.utils.complexity import measure_complexity
    from lesion_lightning.utils.latency import measure_latency

    channels = get_model_spec(name).input_size[0]
    rows = []
    try:
        model = create_model(name).eval()
    except Exception as err:  # one broken model must not hide the others
        return [{"model": name, "size": s, "batch": batch, "backend": backend, "device": device,
                 **paper_figures(name, s), "error": f"cannot build: {type(err).__name__}: {err}"} for s in sizes]
    for size in sizes:
        row: dict[str, Any] = {"model": name, "size": size, "batch": batch, "backend": backend, "device": device}
        try:
            model.cpu()
            with torch.no_grad():
                c = measure_complexity(model, (channels, size, size))
            row.update(params=c.params, macs=c.macs, flops=c.flops, gmacs=c.macs / 1e9)
            lat = measure_latency(model, (channels, size, size), batch=batch, device=device, backend=backend,
                                  repeats=repeats, warmup=warmup)
            row.update(median_ms=lat.median_ms, mean_ms=lat.mean_ms, std_ms=lat.std_ms, min_ms=lat.min_ms,
                       fps=lat.fps, times_ms=lat.times_ms, warmup=lat.warmup, repeats=lat.repeats)
            if lat.provider:
                row["provider"] = lat.provider
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        row.update(paper_figures(name, size))
        rows.append(row)
    del model
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


# ----------------------------------------------------------------------------------------------
# output


def _fmt(value: Any, spec: str) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _table_cells(row: dict[str, Any]) -> list[str]:
    err = "error" in row
    return [
        row["model"], str(row["size"]),
        "error" if err else _fmt(row.get("median_ms"), ".2f"),
        "-" if err else _fmt(row.get("fps"), ".1f"),
        _fmt(row.get("params") and row["params"] / 1e6, ".3f"),
        _fmt(row.get("gmacs"), ".3f"),
        _fmt(row.get("paper_ms"), "g"), _fmt(row.get("paper_fps"), "g"), _fmt(row.get("paper_gmacs"), ".2f"),
        _fmt(row.get("paper_params_m"), "g"), _fmt(row.get("paper_gflops"), ".2f"),
    ]


HEADERS = ("model", "size", "ms (median)", "FPS", "params (M)", "GMACs", "paper ms", "paper FPS", "paper GMACs",
           "paper params (M)", "paper GFLOPs")


def write_markdown(path: Path, doc: dict[str, Any]) -> None:
    s = doc["settings"]
    lines = [
        "# Efficiency benchmark (ours beside SLSNet Table 5 and LANET Table 4)",
        "",
        f"Measured {doc['created']} with backend `{s['backend']}` on `{s['device']}` "
        f"({doc['environment'].get('gpu') or doc['environment']['cpu']}, {doc['environment']['threads']} threads, "
        f"torch {doc['environment']['torch']}), batch {s['batch']}, median of {s['repeats']} runs after "
        f"{s['warmup']} warm-up runs. MACs/params: torch FlopCounterMode at batch 1 (one MAC = 2 FLOPs).",
        "",
    ]
    if doc.get("note"):
        lines += [f"**Note:** {doc['note']}", ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_table_cells(r)) + " |" for r in doc["rows"]]
    lines += ["", f"Paper columns: {SLSNET_TABLE5_SOURCE} (ms, FPS, GMACs at 64/128/256); "
              f"{LANET_TABLE4_SOURCE} (params, GFLOPs only at 224). '-': the paper prints no figure."]
    if doc.get("paper_only"):
        lines += ["", "Paper-only rows of SLSNet Table 5 (models not implemented here):", "",
                  "| model | size | paper ms | paper FPS | paper GMACs |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['size']} | {r['paper_ms']:g} | {r['paper_fps']:g} | {r['paper_gmacs']:.2f} |"
                  for r in doc["paper_only"]]
    errors = [r for r in doc["rows"] if "error" in r]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {r['model']} at {r['size']}: {r['error']}" for r in errors]
    path.write_text("\n".join(lines) + "\n")


def write_outputs(folder: Path, doc: dict[str, Any]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "bench.json", "csv": folder / "bench.csv", "md": folder / "bench.md"}
    paths["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in doc["rows"]:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k, "")) for k in CSV_COLUMNS})
    write_markdown(paths["md"], doc)
    return paths


def _print_table(doc: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    s = doc["settings"]
    table = Table(title=f"Efficiency: {s['backend']} on {s['device']}, batch {s['batch']}, "
                  f"median of {s['repeats']} after {s['warmup']} warm-up", box=box.SIMPLE_HEAD,
                  caption=doc.get("note") or "")
    for i, col in enumerate(HEADERS):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    for r in doc["rows"]:
        table.add_row(*_table_cells(r))
    console = Console(file=sys.stdout)
    Console(file=sys.stdout, width=max(console.width, 140)).print(table)


def run(args: argparse.Namespace) -> int:
    import torch

    from lesion_lightning.utils.latency import check_backend_available

    threads_before = torch.get_num_threads()
    try:
        models = parse_models(args.models)
        sizes = parse_sizes(args.sizes)
        check_backend_available(args.backend, args.device)
        if args.repeats < 1:
            raise ValueError(f"--repeats: must be at least 1, got {args.repeats}")
        if args.warmup < 0:
            raise ValueError(f"--warmup: must be >= 0, got {args.warmup}")
        if args.batch < 1:
            raise ValueError(f"--batch: must be at least 1, got {args.batch}")
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads: must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    try:
        for name in models:
            print(f"benchmarking {name} at {', '.join(map(str, sizes))} px ...", file=sys.stderr)
            rows.extend(bench_model(name, sizes, batch=args.batch, device=args.device, backend=args.backend,
                                    repeats=args.repeats, warmup=args.warmup))
        env = environment(args.device)
    finally:
        torch.set_num_threads(threads_before)  # leave the process as found (tests run in-process)
    doc = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {"models": models, "sizes": sizes, "device": args.device, "batch": args.batch,
                     "backend": args.backend, "repeats": args.repeats, "warmup": args.warmup},
        "environment": env,
        "note": CPU_NOTE if args.device == "cpu" else "",
        "rows": rows,
        "paper_only": paper_only_rows(),
        "sources": {"slsnet_table5": SLSNET_TABLE5_SOURCE, "lanet_table4": LANET_TABLE4_SOURCE},
    }
    paths = write_outputs(args.output, doc)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print_table(doc)
        print(f"wrote {paths['md']}, {paths['csv']}, {paths['json']}")
    for r in rows:
        if "error" in r:
            print(f"error: model {r['model']} at {r['size']} px: {r['error']}", file=sys.stderr)
    return 1 if any("error" in r for r in rows) else 0

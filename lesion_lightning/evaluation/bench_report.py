"""The outputs of the efficiency benchmark: `bench.{json,csv,md}` and the terminal table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lesion_lightning.evaluation.bench import LANET_TABLE4_SOURCE, SLSNET_TABLE5_SOURCE
from lesion_lightning.utils.report_files import write_report

CSV_COLUMNS = ("model", "size", "batch", "backend", "device", "median_ms", "mean_ms", "std_ms", "min_ms", "fps",
               "params", "macs", "flops", "gmacs", "paper_ms", "paper_fps", "paper_gmacs", "paper_params_m",
               "paper_gflops", "paper_memory_mb", "paper_source", "error")


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


def markdown(doc: dict[str, Any]) -> str:
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
    return "\n".join(lines) + "\n"


def write_outputs(folder: Path, doc: dict[str, Any]) -> dict[str, Path]:
    return write_report(folder, "bench", doc, doc["rows"], CSV_COLUMNS, markdown(doc))


def print_table(doc: dict[str, Any]) -> None:
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

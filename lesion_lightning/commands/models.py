"""`lesion-lightning models`: every registered model with its parameters, MACs and FLOPs beside its paper's.

Counts are taken at each model's paper input size (one forward pass on CPU, torch FlopCounterMode,
one MAC = 2 FLOPs), one model at a time so memory stays low. `--names` limits the list. Exit status
0, 1 when a model failed to build or run (its row says why), 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print a JSON list of {"name", "params", "input_size", "macs", "flops", "paper", ...}')
    parser.add_argument("--names", default=None, metavar="A,B,...",
                        help="comma-separated model names to list (default: every registered model)")
    parser.add_argument("--no-cache", action="store_true",
                        help="measure every model again instead of reading the cost cache (model_costs.json in "
                        "$LESION_LIGHTNING_CACHE or .cache/lesion-lightning; rebuilt when model code changes)")


def _select(names_opt: str | None) -> list[str]:
    from lesion_lightning.models import list_models

    available = list_models()
    if names_opt is None:
        return available
    wanted = [n.strip() for n in names_opt.split(",") if n.strip()]
    if not wanted:
        raise ValueError("--names: no model name given")
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValueError(f"--names: unknown model(s) {', '.join(unknown)}; registered: {', '.join(available)}")
    return wanted


MEASURED = ("params", "trainable_params", "macs", "flops", "memory_mb")


def model_row(name: str, cache: Any = None) -> dict[str, Any]:
    """One row: the registry's facts about `name` and its cost report at its paper input size (from `cache`,
    a `CostCache`, when it holds the model)."""
    from lesion_lightning.models import get_model_spec
    from lesion_lightning.utils.complexity import measure_registered

    spec = get_model_spec(name)
    row: dict[str, Any] = {"name": name, "params": None, "input_size": list(spec.input_size), "macs": None,
                           "flops": None, "paper": dict(spec.paper), "trainable_params": None, "memory_mb": None,
                           "preset": spec.preset, "num_classes": spec.num_classes, "description": spec.description}
    cached = cache.get(name) if cache is not None else None
    if cached is not None:
        row.update({k: cached[k] for k in MEASURED})
        return row
    try:
        c = measure_registered(name)
    except Exception as err:  # one broken model must not hide the others
        row["error"] = f"{type(err).__name__}: {err}"
        return row
    row.update(params=c.params, trainable_params=c.trainable_params, macs=c.macs, flops=c.flops,
               memory_mb=round(c.memory_mb, 3))
    if cache is not None:
        cache.put(name, {k: row[k] for k in MEASURED})
    return row


def _millions(n: Any) -> str:
    return "-" if not isinstance(n, (int, float)) else f"{n / 1e6:.3f}"


def _giga(n: Any) -> str:
    return "-" if n is None else f"{n / 1e9:.3f}"


def _paper_figure(paper: dict[str, Any], key: str, fmt: Any) -> str:
    """The paper's figure; else the authors' code's (`official_code_<key>`), marked "(code)"; else "-"."""
    value = paper.get(key)
    if isinstance(value, (int, float)):
        return fmt(value)
    value = paper.get(f"official_code_{key}")
    if isinstance(value, (int, float)):
        return f"{fmt(value)} (code)"
    return "-"


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Registered models (ours at the paper input size; MAC = 2 FLOPs)", box=box.SIMPLE_HEAD,
                  caption="paper columns: the paper's printed figures; '(code)': measured on the authors' code "
                  "where the paper prints none")
    for col, justify in (("model", "left"), ("input", "left"), ("params (M)", "right"), ("paper (M)", "right"),
                         ("GMACs", "right"), ("GFLOPs", "right"), ("paper GMACs", "right"),
                         ("paper GFLOPs", "right"), ("preset", "left")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        paper = r["paper"]
        table.add_row(
            r["name"],
            "x".join(str(v) for v in r["input_size"][1:]),
            _millions(r["params"]) if "error" not in r else "[red]error (see stderr)",
            _paper_figure(paper, "params", lambda v: f"{v / 1e6:.3f}"),
            _giga(r["macs"]),
            _giga(r["flops"]),
            _paper_figure(paper, "gmacs", lambda v: f"{v:.3f}"),
            _paper_figure(paper, "gflops", lambda v: f"{v:.3f}"),
            r["preset"],
        )
    # Cells do not wrap: never squeeze the table below its natural width (~105 columns).
    width = Console(file=sys.stdout).width
    Console(file=sys.stdout, width=max(width, 120)).print(table)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    try:
        names = _select(args.names)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from lesion_lightning.data.cache import default_cache_dir
    from lesion_lightning.utils.cost_cache import CostCache

    cache = None if args.no_cache else CostCache(default_cache_dir())
    err_console = Console(file=sys.stderr)
    rows = []
    # Counting the large baselines takes seconds each on CPU: show progress on stderr (stdout stays JSON).
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("measuring", total=len(names))
        for name in names:
            progress.update(task, description=f"measuring {name}")
            rows.append(model_row(name, cache))
            progress.advance(task)
    if cache is not None:
        cache.save()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(rows)
    failed = [r["name"] for r in rows if "error" in r]
    for r in rows:
        if "error" in r:
            print(f"error: model {r['name']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0

"""Aggregate a table's finished jobs: mean ± std over seeds/folds, paired t-tests, md/csv/tex/png.

Std is the sample standard deviation (ddof=1; 0 runs -> empty, 1 run -> std empty). The paired
t-test (scipy.stats.ttest_rel) compares each row with the paper's proposed row over the runs they
share (same dataset, fold and seed); it needs at least two pairs.
"""

from __future__ import annotations

import csv
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_lightning.tables.runner import Job, embedded_default, embedded_for, read_result
from lesion_lightning.tables.spec import METRIC_LABELS, METRICS, Row, TableSpec


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)  # natural units (fractions for ratio metrics)
    keys: list[tuple] = field(default_factory=list)  # (dataset, fold, seed) of each value
    mean: float = math.nan
    std: float = math.nan
    paper_mean: float | None = None
    paper_std: float | None = None
    paper_printed: str = ""
    p_value: float = math.nan

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def diff(self) -> float:
        return self.mean - self.paper_mean if self.paper_mean is not None and self.n else math.nan


@dataclass
class TableResult:
    spec: TableSpec
    profile: str
    header: list[str]
    # (dataset or "", row id) -> metric -> Cell
    cells: dict[tuple[str, str], dict[str, Cell]]
    status: dict[tuple[str, str], str]


def _metric_value(spec: TableSpec, result: dict[str, Any], metric: str) -> float | None:
    key = spec.scoring.metric_key(metric) if spec.scoring else METRICS[metric][0]
    v = result.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def header_lines(spec: TableSpec, profile: str) -> list[str]:
    lines = [f"{spec.paper} — Table {spec.table}: {spec.title}", f"Spec: {spec.path.name}; profile: {profile}"]
    if profile == "smoke":
        _, where = embedded_default()
        datasets = ", ".join(spec.datasets) or "-"
        note = (f"SMOKE PROFILE — the data is NOT the paper's dataset ({datasets}): models were trained on "
                f"{where}, with few epochs and small images. Our numbers are a pipeline check, not a reproduction.")
        if spec.kind == "cross-dataset":
            note += " Test sets: " + "; ".join(f"{d}: {embedded_for(d)}" for d in spec.test_datasets) + "."
        if spec.kind in ("complexity", "efficiency"):
            note = "Complexity/efficiency only: no data involved (latency measured on this machine's CPU)."
        lines.append(note)
    elif spec.kind in ("complexity", "efficiency"):
        lines.append("Complexity/efficiency only: no data involved (latency measured on this machine's CPU).")
    else:
        lines.append(f"Paper protocol on the real dataset(s): {', '.join(spec.datasets + spec.test_datasets)}, "
                     f"split {spec.split}" + (f", {spec.folds} folds" if spec.folds else ""))
    lines += spec.convention_lines()
    if spec.notes:
        lines.append(f"Notes: {spec.notes.strip()}")
    return lines


def aggregate(spec: TableSpec, jobs: list[Job], profile: str) -> TableResult:
    cells: dict[tuple[str, str], dict[str, Cell]] = {}
    status: dict[tuple[str, str], str] = {}
    for row in spec.rows:
        if spec.kind == "cross-dataset" and row.model and not row.dataset:
            continue  # the trained model: its results appear under the test-dataset rows
        key = (row.dataset or "", row.id)
        cells[key] = {m: Cell() for m in spec.metrics}
        for m, pv in row.paper.items():
            cells[key][m].paper_mean, cells[key][m].paper_std, cells[key][m].paper_printed = pv.mean, pv.std, pv.printed
        status[key] = "cited" if row.cited_from else "paper-only" if row.paper_only else "not run"
    for job in jobs:
        if spec.kind == "cross-dataset" and job.kind == "train":
            continue
        result = read_result(job)
        if result is None:
            continue
        row = next((r for r in spec.rows if r.id == job.row and (r.dataset in (None, job.dataset))), None)
        if row is None:
            continue
        key = (row.dataset or "", row.id)
        if key not in cells:
            continue
        status[key] = "ours"
        for m in spec.metrics:
            v = _metric_value(spec, result, m)
            if v is not None:
                cells[key][m].values.append(v)
                cells[key][m].keys.append((job.dataset, job.fold, job.seed, job.size))
    for key, per_metric in cells.items():
        for cell in per_metric.values():
            if cell.n:
                arr = np.asarray(cell.values, dtype=float)
                cell.mean = float(arr.mean())
                cell.std = float(arr.std(ddof=1)) if cell.n > 1 else math.nan
    if spec.proposed:
        for (dataset, row_id), per_metric in cells.items():
            if row_id == spec.proposed:
                continue
            ref = cells.get((dataset, spec.proposed))
            if ref is None:
                continue
            for m, cell in per_metric.items():
                cell.p_value = paired_p_value(cell, ref[m])
    return TableResult(spec=spec, profile=profile, header=header_lines(spec, profile), cells=cells, status=status)


def paired_p_value(a: Cell, b: Cell) -> float:
    from scipy import stats

    bmap = dict(zip(b.keys, b.values))
    pairs = [(v, bmap[k]) for k, v in zip(a.keys, a.values) if k in bmap]
    if len(pairs) < 2:
        return math.nan
    x, y = np.asarray(pairs, dtype=float).T
    if np.allclose(x - y, (x - y)[0]):  # zero variance of the differences: the t statistic is undefined
        return math.nan
    return float(stats.ttest_rel(x, y).pvalue)


# -- formatting -------------------------------------------------------------------------------------
def _scale(spec: TableSpec, metric: str) -> float:
    return 100.0 if METRICS[metric][1] and spec.units == "percent" else 1.0


def _fmt(x: float | None, digits: int) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _digits(spec: TableSpec, metric: str) -> int:
    if METRICS[metric][1]:
        return 2 if spec.units == "percent" else 3
    return {"layers": 0, "params_m": 3, "memory_mb": 1}.get(metric, 2)


def row_tag(row: Row) -> str:
    """What a row's label carries in every output: cited or paper-only, and a deviation mark (header line)."""
    tag = f" (cited from {row.cited_from})" if row.cited_from else " (paper-only)" if row.paper_only else ""
    return tag + (" † deviation" if row.deviation else "")


def table_rows(res: TableResult) -> list[dict[str, Any]]:
    """One flat record per (dataset, row, metric), in display units."""
    spec = res.spec
    out = []
    labels = {(r.dataset or "", r.id): r for r in spec.rows}
    for (dataset, row_id), per_metric in res.cells.items():
        row = labels.get((dataset, row_id)) or labels.get(("", row_id)) or spec.row(row_id)
        for m, cell in per_metric.items():
            s, d = _scale(spec, m), _digits(spec, m)
            out.append({
                "table": spec.id, "dataset": dataset, "row": row_id, "label": row.label, "model": row.model or "",
                "status": res.status.get((dataset, row_id), ""), "metric": m, "n": cell.n,
                "ours_mean": _fmt(cell.mean * s, d) if cell.n else "",
                "ours_std": _fmt(cell.std * s, d) if cell.n > 1 else "",
                "paper": cell.paper_printed,
                "paper_mean": _fmt(cell.paper_mean * s if cell.paper_mean is not None else None, d),
                "diff": _fmt(cell.diff * s, d),
                "p_value": "" if math.isnan(cell.p_value) else f"{cell.p_value:.3g}",
                "cited_from": row.cited_from, "deviation": row.deviation,
            })
    return out


def _ours(cell: Cell, s: float, d: int) -> str:
    if not cell.n:
        return "—"
    return f"{cell.mean * s:.{d}f}" + (f" ± {cell.std * s:.{d}f}" if cell.n > 1 else "") + f" (n={cell.n})"


def wide_rows(res: TableResult) -> tuple[list[str], list[list[str]]]:
    """Display table: one line per row, per metric ours | paper | diff | p."""
    spec = res.spec
    cols = ["dataset", "model", "status"]
    for m in spec.metrics:
        lab = METRIC_LABELS[m]
        cols += [f"{lab} ours", f"{lab} paper", f"{lab} diff", f"{lab} p"]
    lines = []
    for (dataset, row_id), per_metric in res.cells.items():
        row = next((r for r in spec.rows if r.id == row_id and (r.dataset or "") in ("", dataset)), spec.row(row_id))
        line = [dataset, row.label + row_tag(row), res.status.get((dataset, row_id), "")]
        for m in spec.metrics:
            cell, s, d = per_metric[m], _scale(spec, m), _digits(spec, m)
            line += [_ours(cell, s, d), cell.paper_printed or "—", _fmt(cell.diff * s, d) or "—",
                     "—" if math.isnan(cell.p_value) else f"{cell.p_value:.3g}"]
        lines.append(line)
    if all(not d for d, _ in res.cells):  # one dataset: no dataset column
        cols, lines = cols[1:], [line[1:] for line in lines]
    return cols, lines


def write_outputs(res: TableResult, output: str | Path) -> dict[str, Path]:
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    stem = output / res.spec.id
    paths = {"md": stem.with_suffix(".md"), "csv": stem.with_suffix(".csv"), "tex": stem.with_suffix(".tex"),
             "png": stem.with_suffix(".png")}
    cols, lines = wide_rows(res)
    units = "percent" if res.spec.units == "percent" else "fractions"
    foot = (f"Ratio metrics in {units} as in the paper. ours = mean ± sample std (n = runs over seeds/folds); "
            f"diff = ours − paper; p = paired t-test vs {res.spec.proposed or '-'} over matching seeds/folds.")
    md = [f"# {res.header[0]}", ""] + [f"> {h}" for h in res.header[1:]] + ["", foot, ""]
    md.append("| " + " | ".join(cols) + " |")
    md.append("|" + "---|" * len(cols))
    md += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in lines]
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")

    flat = table_rows(res)
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        for h in res.header:
            fh.write(f"# {h}\n")
        writer = csv.DictWriter(fh, fieldnames=list(flat[0]) if flat else ["table"])
        writer.writeheader()
        writer.writerows(flat)

    paths["tex"].write_text(_latex(res, cols, lines, foot), encoding="utf-8")
    _plot(res, paths["png"])
    return paths


def _tex_escape(s: str) -> str:
    out = s
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("—", "--"), ("–", "--"), ("−", "-")):
        out = out.replace(a, b)
    return out


def _latex(res: TableResult, cols: list[str], lines: list[list[str]], foot: str) -> str:
    body = ["% " + h for h in res.header]
    body += [r"\begin{table}[ht]", r"\centering", r"\scriptsize",
             r"\caption{" + _tex_escape(res.header[0].rstrip(".") + ". " + " ".join(res.header[2:3])) + "}",
             r"\begin{tabular}{" + "l" * (len(cols) - 4 * len(res.spec.metrics)) + "r" * (4 * len(res.spec.metrics)) + "}",
             r"\hline",
             " & ".join(_tex_escape(c) for c in cols) + r" \\", r"\hline"]
    body += [" & ".join(_tex_escape(c) for c in line) + r" \\" for line in lines]
    body += [r"\hline", r"\end{tabular}", r"\\[2pt] {\tiny " + _tex_escape(foot) + "}", r"\end{table}", ""]
    return "\n".join(body)


def _short_label(spec: TableSpec, dataset: str, row_id: str, width: int = 24) -> str:
    row = next((r for r in spec.rows if r.id == row_id and (r.dataset or "") in ("", dataset)), None)
    label = row.label if row else row_id
    return label if len(label) <= width else label[: width - 1] + "…"


def _plot(res: TableResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = res.spec
    keys = list(res.cells)
    metrics = spec.metrics
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 2.6 * len(metrics)), 4.2), squeeze=False)
    width = 0.38
    for ax, m in zip(axes[0], metrics):
        s = _scale(spec, m)
        xs = np.arange(len(keys))
        ours = [res.cells[k][m].mean * s if res.cells[k][m].n else np.nan for k in keys]
        err = [res.cells[k][m].std * s if res.cells[k][m].n > 1 else 0.0 for k in keys]
        paper = [res.cells[k][m].paper_mean * s if res.cells[k][m].paper_mean is not None else np.nan for k in keys]
        ax.bar(xs - width / 2, ours, width, yerr=err, label="ours", color="#3b7dd8", capsize=2)
        ax.bar(xs + width / 2, paper, width, label="paper", color="#bbbbbb")
        ax.set_title(METRIC_LABELS[m], fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels([(f"{d}: " if d and len(spec.datasets) > 1 else "") + _short_label(spec, d, r) for d, r in keys],
                           rotation=60, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].legend(fontsize=7)
    # A paper's table caption is long: wrap it to the figure's width instead of letting it run off.
    title = "\n".join(textwrap.wrap(res.header[0], width=max(60, int(fig.get_figwidth() * 14))))
    if res.profile == "smoke":
        title += "\nSMOKE: data is NOT the paper's dataset"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(res: TableResult, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    spec = res.spec
    table = Table(title=res.header[0], caption="\n".join(res.header[1:]), show_lines=False)
    table.add_column("model")
    if len(spec.datasets) > 1 or spec.kind == "cross-dataset":
        table.add_column("dataset")
    table.add_column("metric")
    for c in ("ours (mean ± std)", "paper", "diff", f"p vs {spec.proposed or '-'}"):
        table.add_column(c, justify="right")
    for (dataset, row_id), per_metric in res.cells.items():
        row = next((r for r in spec.rows if r.id == row_id and (r.dataset or "") in ("", dataset)), spec.row(row_id))
        first = True
        for m, cell in per_metric.items():
            s, d = _scale(spec, m), _digits(spec, m)
            label = (row.label + row_tag(row)) if first else ""
            vals = [label] + ([dataset if first else ""] if len(spec.datasets) > 1 or spec.kind == "cross-dataset" else [])
            vals += [METRIC_LABELS[m], _ours(cell, s, d), cell.paper_printed or "—", _fmt(cell.diff * s, d) or "—",
                     "—" if math.isnan(cell.p_value) else f"{cell.p_value:.3g}"]
            table.add_row(*vals, end_section=(m == spec.metrics[-1]))
            first = False
    console.print(table)

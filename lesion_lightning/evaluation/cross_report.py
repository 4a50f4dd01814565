"""The outputs of a cross-dataset evaluation: `cross_eval.{json,csv,md}` and `per_image_<dataset>.csv`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lesion_lightning.utils.report_files import write_csv, write_report

# The five metrics of LANET Table 9, in its column order (pooled values, in %).
TABLE_METRICS = ("accuracy", "dice", "iou", "sensitivity", "specificity")
CSV_COLUMNS = ("job", "dataset", "images", "num_images", "num_shared", "headline",
               *(f"{m}" for m in TABLE_METRICS), *(f"{m}_per_image" for m in TABLE_METRICS), "thresholded_jaccard",
               *(f"paper_{m}" for m in TABLE_METRICS), "data_source", "root")
PER_IMAGE_COLUMNS = ("id", "seen", "dice", "iou", "sensitivity", "specificity", "accuracy", "precision",
                     "thresholded_jaccard", "tp", "fp", "tn", "fn", "data_source")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in doc["results"]:
        for images in ("all", "unseen"):
            s = r.get(images)
            row: dict[str, Any] = {"job": doc["name"], "dataset": r["dataset"], "images": images,
                                   "root": r.get("root", ""), "num_shared": r.get("num_shared", ""),
                                   "data_source": r.get("data_source", ""),
                                   "headline": images == doc["headline"]}
            if s is not None:
                row["num_images"] = s["num_images"]
                row.update({m: s["pooled"][m] for m in TABLE_METRICS})
                row.update({f"{m}_per_image": s["per_image"][m] for m in TABLE_METRICS})
                row["thresholded_jaccard"] = s["per_image"]["thresholded_jaccard"]
            else:
                row["num_images"] = 0 if "error" not in r else ""
            for m in TABLE_METRICS:
                if m in r.get("paper", {}):
                    row[f"paper_{m}"] = r["paper"][m]
            rows.append(row)
    return rows


def markdown(doc: dict[str, Any]) -> str:
    t = doc["training_set"]
    pre = doc["preprocessing"]
    lines = [
        f"## Cross-dataset evaluation: {doc['name']}",
        "",
        f"Model `{doc['model']}` from `{doc['checkpoint']}`, trained on {t['dataset']} ({t['num_seen']} seen images, "
        f"subsets {', '.join(t['seen_subsets'])}, root `{t['root']}`). Preprocessing: "
        f"{pre['image_size'][0]}x{pre['image_size'][1]}, {pre['normalisation']['formula']}; threshold "
        f"{doc['threshold']:g}{', TTA' if doc['tta'] else ''}; network in {doc.get('backend', 'eager PyTorch')}. "
        f"Scored at {doc['resolution']} resolution: "
        f"{doc['resolution_note']}.",
        "",
        f"Headline: **{doc['headline']}** images ({'shared images left out' if doc['headline'] == 'unseen' else 'every labelled image'}). "
        "Pooled metrics over all pixels of the set, in %; 'paper' rows: the paper's printed values.",
        "",
        "| test dataset | images | n | shared | " + " | ".join(TABLE_METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(TABLE_METRICS),
    ]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['label']} | error | - | - | " + " | ".join("-" for _ in TABLE_METRICS) + " |")
            continue
        order = ("unseen", "all") if doc["headline"] == "unseen" else ("all", "unseen")
        for images in order:
            s = r.get(images)
            mark = "**" if images == doc["headline"] else ""
            cells = [_pct(s["pooled"][m]) if s else "-" for m in TABLE_METRICS]
            n = s["num_images"] if s else 0
            lines.append(f"| {r['label']} | {mark}{images}{mark} | {n} | {r['num_shared']} | " + " | ".join(cells) + " |")
        if r.get("paper"):
            lines.append(f"| {r['label']} | paper | - | - | "
                         + " | ".join(f"{r['paper'][m]:.2f}" if m in r["paper"] else "-" for m in TABLE_METRICS) + " |")
    notes = [f"- {r['label']}: data from {r.get('root_source', '?')} (`{r.get('root', '?')}`)"
             + (f"; {r['num_shared']} image(s) shared with the training set" if r.get("num_shared") else "")
             + (f"; error: {r['error']}" if "error" in r else "") for r in doc["results"]]
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_outputs(folder: Path, doc: dict[str, Any]) -> dict[str, Path]:
    paths = write_report(folder, "cross_eval", doc, _csv_rows(doc), CSV_COLUMNS, markdown(doc))
    for r in doc["results"]:
        if r.get("per_image"):
            write_csv(folder / f"per_image_{r['dataset']}.csv", r["per_image"], PER_IMAGE_COLUMNS)
    return paths


def print_tables(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    width = Console(file=sys.stdout).width
    Console(file=sys.stdout, width=max(width, 110)).print(Markdown(markdown(doc)))

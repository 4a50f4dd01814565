"""`lesion-lightning reproduce`: table specs, results store (resume), aggregation, outputs.

The default tests run a tiny two-model spec on the embedded data (32 px, 1 epoch, 2 batches); the full
`make reproduce-table5` smoke run is marked slow.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lesion_lightning.cli import main
from lesion_lightning.tables import runner
from lesion_lightning.tables.aggregate import aggregate
from lesion_lightning.tables.spec import TABLES_DIR, SpecError, find_spec, load_all, load_spec, parse_value
from lesion_lightning.paths import REPO_ROOT

PAPERS = REPO_ROOT.parent / "shared" / "papers"
REQUIRED = {
    "lanet-table4", "lanet-table5", "lanet-table6", "lanet-table7", "lanet-table8", "lanet-table9", "lanet-table11",
    "lanet-5fold", "slsnet-table3", "slsnet-table4", "slsnet-table5", "slsnet-table6", "slsnet-table7",
    "slsnet-table8", "scsonet-table1", "scsonet-table2", "scsonet-table3", "medlitenet-headline", "unet-aksoy-headline",
}

TINY = """
paper: "Tiny test table"
paper_file: 000_07d483c125ec6a5c.txt
table: "T"
title: "two small U-Nets"
kind: train
units: percent
datasets: [ham10000]
split: 80-10-10
metrics: [accuracy, dice, iou, sensitivity, specificity]
proposed: wide
scoring: {aggregation: pooled, resolution: network, threshold: 0.5, classes: lesion}
profiles:
  smoke: {epochs: 1, image_size: 32, batch_size: 4, seeds: 2, limit_batches: 2}
rows:
  - {id: narrow, label: "Narrow", model: simple_unet, preset: experiments/demo.yaml, model_kwargs: {base_width: 4},
     paper: {dice: "77.24 ± 0.52", accuracy: "90.87"}}
  - {id: other, label: "Other [1]", paper_only: true, paper: {dice: "92.95 ± 0.29"}}
  - {id: wide, label: "Wide", model: simple_unet, preset: experiments/demo.yaml, model_kwargs: {base_width: 6},
     paper: {dice: "94.53 ± 0.25"}}
"""


# -- specs --------------------------------------------------------------------------------------------
def test_every_required_spec_loads_and_is_listed(capsys):
    ids = {s.id for s in load_all()}
    assert REQUIRED <= ids
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for path in sorted(TABLES_DIR.glob("*.yaml")):
        assert path.stem in out


def test_parse_value_units():
    v = parse_value("90.87 ± 0.46", ratio=True, units="percent")
    assert (v.mean, v.std) == pytest.approx((0.9087, 0.0046))
    v = parse_value("91.5%", ratio=True, units="fraction")
    assert v.mean == pytest.approx(0.915) and v.std is None
    assert parse_value("0.897 ± 0.010", ratio=True, units="fraction").std == pytest.approx(0.010)
    assert parse_value("–", ratio=True, units="percent").mean is None
    assert parse_value("134.3", ratio=False, units="percent").mean == pytest.approx(134.3)


@pytest.mark.parametrize("mutation, key", [
    (("metrics: [accuracy", "metrics: [accurasy"), "metrics[0]"),
    (("kind: train", "kind: trian"), "kind"),
    (('model: simple_unet, preset: experiments/demo.yaml, model_kwargs: {base_width: 4}', "model_kwargs: {base_width: 4}"), "rows[0].model"),
    (('dice: "77.24 ± 0.52"', 'dice: "77.24 +- x"'), "rows[0].paper.dice"),
    (("proposed: wide", "proposed: nobody"), "proposed"),
    (("aggregation: pooled", "aggregation: mean"), "scoring.aggregation"),
    (("classes: lesion}", "classes: lesion, bins: 3}"), "scoring.bins"),
    (("scoring: {aggregation: pooled, resolution: network, threshold: 0.5, classes: lesion}\n", ""), "scoring"),
    (("proposed: wide", "proposed: wide\nprotocol: {checkpoint: best-val-iou}"), "protocol.checkpoint"),
])
def test_bad_spec_names_file_and_key(tmp_path, capsys, mutation, key):
    bad = tmp_path / "broken-table.yaml"
    bad.write_text(TINY.replace(*mutation))
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(bad) in str(info.value) and key in str(info.value)
    assert main(["reproduce", str(bad), "--profile", "smoke"]) == 2
    assert "broken-table.yaml" in capsys.readouterr().out


def test_missing_preset_and_missing_data_root_are_clear(tmp_path, capsys):
    spec_path = tmp_path / "nopreset.yaml"
    spec_path.write_text(TINY.replace("preset: experiments/demo.yaml, model_kwargs: {base_width: 4}",
                                      "preset: experiments/does-not-exist.yaml"))
    with pytest.raises(runner.JobError, match=r"nopreset.yaml: row 'narrow': preset experiments/does-not-exist.yaml"):
        runner.plan_jobs(load_spec(spec_path), "smoke", tmp_path)
    assert main(["reproduce", "lanet-table5", "--profile", "paper"]) == 2
    assert "needs the real dataset" in capsys.readouterr().out


def test_kfold_spec_plans_one_job_per_fold(tmp_path):
    jobs = runner.plan_jobs(find_spec("lanet-5fold"), "smoke", tmp_path)
    assert [j.fold for j in jobs] == [0, 1, 2, 3, 4]
    assert all(j.stage == "val" and "--data.split=kfold" in j.options and "--data.folds=5" in j.options for j in jobs)
    assert len({j.hash for j in jobs}) == 5


# -- paper columns equal the paper's text ---------------------------------------------------------------
def _paper_lines(name: str) -> list[str]:
    path = PAPERS / name
    if not path.is_file():
        pytest.skip(f"papers not found at {PAPERS}")
    return path.read_text(encoding="utf-8").splitlines()


def _tab_table(lines: list[str], caption: str) -> dict[str, list[str]]:
    """Rows (label -> cells) of the tab-separated table that follows the line starting with `caption`."""
    start = next(i for i, line in enumerate(lines) if line.startswith(caption))
    rows: dict[str, list[str]] = {}
    header_seen = False
    for line in lines[start + 1:]:
        if "\t" not in line:
            if rows:
                break
            continue
        cells = [re.sub(r"</?[bi]>", "", c).strip() for c in line.split("\t")]
        if not header_seen:
            header_seen = True
            continue
        if any(cells[1:]):
            rows[cells[0]] = cells[1:]
    return rows


TAB_TABLES = [
    ("lanet-table4", "000_07d483c125ec6a5c.txt", "**Table 4:**"),
    ("lanet-table5", "000_07d483c125ec6a5c.txt", "**Table 5:**"),
    ("lanet-table6", "000_07d483c125ec6a5c.txt", "**Table 6:**"),
    ("lanet-table7", "000_07d483c125ec6a5c.txt", "**Table 7:**"),
    ("lanet-table8", "000_07d483c125ec6a5c.txt", "**Table 8:**"),
    ("lanet-table9", "000_07d483c125ec6a5c.txt", "**Table 9:**"),
    ("lanet-table11", "000_07d483c125ec6a5c.txt", "**Table 11:**"),
    ("slsnet-table3", "002_0b47992e26efa902.txt", "**Table 3**"),
    ("slsnet-table4", "002_0b47992e26efa902.txt", "**Table 4**"),
    ("slsnet-table6", "002_0b47992e26efa902.txt", "**Table 6**"),
    ("slsnet-table7", "002_0b47992e26efa902.txt", "**Table 7**"),
    ("slsnet-table8", "002_0b47992e26efa902.txt", "**Table 8**"),
]


@pytest.mark.parametrize("table_id, paper_file, caption", TAB_TABLES)
def test_paper_values_equal_the_paper_tables(table_id, paper_file, caption):
    spec = find_spec(table_id)
    assert spec.paper_file == paper_file
    printed = _tab_table(_paper_lines(paper_file), caption)
    checked = 0
    for row in spec.rows:
        if not row.paper:
            continue
        cells = printed[row.label]
        assert [row.paper[m].printed for m in spec.metrics if m in row.paper] == cells[:len(row.paper)], row.label
        checked += 1
    assert checked == len(printed)  # every printed row is in the spec


def test_slsnet_table5_and_ocr_tables_and_headlines():
    sls = _paper_lines("002_0b47992e26efa902.txt")
    spec = find_spec("slsnet-table5")
    for label, cells in _tab_table(sls, "**Table 5**").items():
        if label == "":
            continue
        for k, size in enumerate((64, 128, 256)):
            row = next(r for r in spec.rows if r.label == f"{label} {size} × {size}")
            assert [row.paper[m].printed for m in ("ms", "fps", "macs_g")] == cells[3 * k:3 * k + 3]
    scs = "\n".join(_paper_lines("003_a4ccc4571ed5cb6a.txt"))
    for row in find_spec("scsonet-table1").rows:
        values = " ".join(row.paper[m].printed for m in ("params_m", "macs_g", "iou", "dice"))
        assert re.search(re.escape(row.label) + r"\s+" + re.escape(values) + r"\s*$", scs, re.M), row.label
    for table_id in ("scsonet-table2", "scsonet-table3"):
        for row in find_spec(table_id).rows:
            assert re.search(rf"^{re.escape(row.label)} {re.escape(row.paper['params_m'].printed)}$", scs, re.M)
            rest = " ".join(row.paper[m].printed for m in ("macs_g", "iou", "dice"))
            assert re.search(rf"^\s*{re.escape(rest)}$", scs, re.M), row.label
    med = _paper_lines("001_5331e9cf20d5f3be.txt")[7]
    spec = find_spec("medlitenet-headline")
    for row_id, dice, iou in (("medlitenet", "0.897 ± 0.010", "0.821 ± 0.015"), ("medlitenet_ensemble", "0.904 ± 0.012", "0.830 ± 0.018")):
        row = spec.row(row_id)
        assert (row.paper["dice"].printed, row.paper["iou"].printed) == (dice, iou)
        assert f"${dice.replace('±', chr(92) + 'pm')}$" in med
    aksoy = _paper_lines("004_5d88eff72ad7482c.txt")[10]
    row = find_spec("unet-aksoy-headline").row("unet_aksoy")
    assert (f"Coefficient of {row.paper['dice_eq2'].printed}, Jaccard Index of {row.paper['mean_iou'].printed}, "
            f"and the sensitivity of {row.paper['sensitivity'].printed}") in aksoy
    five = find_spec("lanet-5fold").row("lanet")
    lanet_text = "\n".join(_paper_lines("000_07d483c125ec6a5c.txt"))
    for m in ("dice", "iou"):
        mean, std = five.paper[m].printed.replace("%", "").split(" ± ")
        assert f"${mean}\\% \\pm {std}\\%$" in lanet_text


# -- runner: smoke run, resume, aggregation ---------------------------------------------------------
def _stored_runs(experiment_dir: Path) -> dict[str, dict[int, dict]]:
    """row -> seed -> test metrics, read straight from the run folders."""
    out: dict[str, dict[int, dict]] = {}
    for job_file in experiment_dir.glob("*/job.json"):
        job = json.loads(job_file.read_text())
        metrics = json.loads((job_file.parent / "metrics.json").read_text())
        out.setdefault(job["row"], {})[job["seed"]] = metrics["test"]
    return out


def test_smoke_run_resumes_and_aggregates_like_numpy_scipy(tmp_path, capsys, monkeypatch):
    spec_path = tmp_path / "tiny-table.yaml"
    spec_path.write_text(TINY)
    runs, out = tmp_path / "runs", tmp_path / "tables"
    argv = ["reproduce", str(spec_path), "--profile", "smoke", "--runs-root", str(runs), "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "ran 4, skipped 0" in printed and "NOT the paper's dataset" in printed

    # Every job has its own finished run folder.
    stored = _stored_runs(runs / "reproduce-tiny-table")
    assert {r: sorted(s) for r, s in stored.items()} == {"narrow": [42, 43], "wide": [42, 43]}
    for d in (runs / "reproduce-tiny-table").iterdir():
        assert (d / "config.yaml").is_file() and (d / "per_image_test.csv").is_file()

    # Resume: a second invocation runs nothing.
    def fail(*a, **k):
        raise AssertionError("a finished job was run again")

    monkeypatch.setattr(runner, "run_job", fail)
    assert main(argv) == 0
    assert "4 jobs, 4 already finished" in capsys.readouterr().out
    counts = runner.run_jobs(runner.plan_jobs(load_spec(spec_path), "smoke", runs))
    assert counts == {"ran": 0, "skipped": 4, "failed": 0}

    # Aggregation equals numpy/scipy on the stored per-run metrics.
    spec = load_spec(spec_path)
    result = aggregate(spec, runner.plan_jobs(spec, "smoke", runs), "smoke")
    with open(out / "tiny-table.csv", newline="") as fh:
        table = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    for metric in spec.metrics:
        key = {"jsc_th": "thresholded_jaccard"}.get(metric, metric)
        narrow = np.array([stored["narrow"][s][key] for s in (42, 43)])
        wide = np.array([stored["wide"][s][key] for s in (42, 43)])
        cell = result.cells[("", "narrow")][metric]
        assert cell.mean == pytest.approx(np.mean(narrow)) and cell.std == pytest.approx(np.std(narrow, ddof=1))
        diffs = narrow - wide
        expected_p = stats.ttest_rel(narrow, wide).pvalue if not np.allclose(diffs, diffs[0]) else math.nan
        assert (math.isnan(cell.p_value) and math.isnan(expected_p)) or cell.p_value == pytest.approx(expected_p)
        line = next(r for r in table if r["row"] == "narrow" and r["metric"] == metric)
        assert float(line["ours_mean"]) == pytest.approx(100 * np.mean(narrow), abs=0.006)
        assert float(line["ours_std"]) == pytest.approx(100 * np.std(narrow, ddof=1), abs=0.006)
        if not math.isnan(expected_p):
            assert float(line["p_value"]) == pytest.approx(expected_p, rel=1e-2)
    dice = next(r for r in table if r["row"] == "narrow" and r["metric"] == "dice")
    assert dice["paper"] == "77.24 ± 0.52" and float(dice["diff"]) == pytest.approx(
        100 * np.mean([stored["narrow"][s]["dice"] for s in (42, 43)]) - 77.24, abs=0.006)
    other = next(r for r in table if r["row"] == "other" and r["metric"] == "dice")
    assert other["status"] == "paper-only" and other["ours_mean"] == "" and other["paper"] == "92.95 ± 0.29"

    md = (out / "tiny-table.md").read_text()
    assert "NOT the paper's dataset" in md and "Other [1] (paper-only)" in md
    assert "NOT the paper's dataset" in (out / "tiny-table.tex").read_text()
    assert (out / "tiny-table.png").stat().st_size > 1000


def test_kfold_table_scores_each_held_out_fold(tmp_path):
    spec_path = tmp_path / "tiny-kfold.yaml"
    spec_path.write_text(TINY.replace("split: 80-10-10", "split: kfold\nfolds: 2").replace("seeds: 2", "seeds: 1")
                         .replace("proposed: wide", "proposed: narrow\nprotocol: {checkpoint: final-epoch, scored_on: val}"))
    spec = load_spec(spec_path)
    jobs = runner.plan_jobs(spec, "smoke", tmp_path, rows=["narrow"])
    assert [(j.fold, j.stage, j.checkpoint) for j in jobs] == [(0, "val", "final-epoch"), (1, "val", "final-epoch")]
    assert runner.run_jobs(jobs, keep_checkpoints=False) == {"ran": 2, "skipped": 0, "failed": 0}
    dice = []
    for job in jobs:
        run_dir = Path(job.run_dir)
        assert not list((run_dir / "checkpoints").glob("*.ckpt"))  # released once the result is stored
        split = json.loads((run_dir / "split.json").read_text())
        assert "test" not in split["subsets"] or not split["subsets"]["test"]
        val = json.loads((run_dir / "metrics.json").read_text())["val"]
        assert val["checkpoint"] == "checkpoints/last.ckpt"  # the final network, never chosen on the scored fold
        dice.append(val["dice"])
    cell = aggregate(spec, jobs, "smoke").cells[("", "narrow")]["dice"]
    assert cell.mean == pytest.approx(np.mean(dice)) and cell.std == pytest.approx(np.std(dice, ddof=1))


CROSS = """
paper: "Tiny cross-dataset table"
paper_file: 000_07d483c125ec6a5c.txt
table: "X"
title: "train once, test elsewhere"
kind: cross-dataset
units: percent
datasets: [ham10000]
test_datasets: [isic2017, ph2]
split: 80-10-10
metrics: [accuracy, dice]
scoring: {aggregation: pooled, resolution: network, threshold: 0.5, classes: lesion}
profiles:
  smoke: {epochs: 1, image_size: 32, batch_size: 4, seeds: 1, limit_batches: 2}
rows:
  - {id: net, label: "Net", model: simple_unet, preset: experiments/demo.yaml, model_kwargs: {base_width: 4}}
  - {id: isic2017, label: "ISIC 2017", dataset: isic2017, paper: {accuracy: "93.81", dice: "90.79"}}
  - {id: ph2, label: "PH2", dataset: ph2, paper: {accuracy: "93.46", dice: "90.61"}}
"""


def test_cross_dataset_table_tests_the_trained_checkpoint_elsewhere(tmp_path):
    spec_path = tmp_path / "tiny-cross.yaml"
    spec_path.write_text(CROSS)
    spec = load_spec(spec_path)
    jobs = runner.plan_jobs(spec, "smoke", tmp_path)
    assert [(j.kind, j.row) for j in jobs] == [("train", "net"), ("test", "isic2017"), ("test", "ph2")]
    assert runner.run_jobs(jobs, keep_checkpoints=False) == {"ran": 3, "skipped": 0, "failed": 0}
    train_dir = Path(jobs[0].run_dir)
    assert not list((train_dir / "checkpoints").glob("*.ckpt"))  # released after both test jobs
    res = aggregate(spec, jobs, "smoke")
    for job in jobs[1:]:
        # scored by the cross-eval engine with the trained checkpoint, on that dataset
        doc = json.loads((Path(job.run_dir) / "cross_eval.json").read_text())
        assert doc["checkpoint"].startswith(str(train_dir / "checkpoints"))
        (entry,) = doc["results"]
        assert entry["dataset"] == job.dataset and entry["num_images"] > 0
        stored = json.loads((Path(job.run_dir) / "metrics.json").read_text())["test"]
        assert stored["dice"] == entry["all"]["pooled"]["dice"]
        cell = res.cells[(job.dataset, job.row)]["dice"]
        assert cell.n == 1 and cell.mean == pytest.approx(stored["dice"])
        assert cell.diff == pytest.approx(stored["dice"] - cell.paper_mean)


def test_complexity_table_measures_lanet(tmp_path):
    spec = find_spec("lanet-table4")
    jobs = runner.plan_jobs(spec, "smoke", tmp_path, rows=["lanet"])
    assert runner.run_jobs(jobs)["ran"] == 1
    res = aggregate(spec, jobs, "smoke")
    cells = res.cells[("", "lanet")]
    assert cells["params_m"].mean == pytest.approx(0.846786, abs=1e-6)
    assert cells["memory_mb"].mean == pytest.approx(846786 * 4 / 1024**2)
    assert cells["params_m"].paper_printed == "0.846" and cells["gflops"].paper_printed == "4.22"
    assert cells["gflops"].mean > 0


@pytest.mark.slow
def test_make_reproduce_table5_smoke(tmp_path):
    proc = subprocess.run(["make", "-s", "reproduce-table5", f"REPRODUCE_ARGS=--runs-root {tmp_path / 'runs'} "
                           f"--output {tmp_path / 'tables'}"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for ext in ("md", "csv", "tex", "png"):
        assert (tmp_path / "tables" / f"lanet-table5.{ext}").is_file()
    md = (tmp_path / "tables" / "lanet-table5.md").read_text()
    assert "NOT the paper's dataset" in md and "96.44 ± 0.22" in md and "MRP-UNet [17] (paper-only)" in md
    with open(tmp_path / "tables" / "lanet-table5.csv", newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    ours = {r["row"] for r in rows if r["status"] == "ours"}
    assert ours == {"unet", "unetplusplus", "unet3plus", "deeplabv3plus", "lanet"}

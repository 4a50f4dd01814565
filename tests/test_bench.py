"""`lesion-lightning bench`: latency table with params/MACs from complexity.py and the papers' figures."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lesion_lightning.cli import main
from lesion_lightning.evaluation import bench

PAPERS = Path(__file__).resolve().parent.parent.parent / "shared" / "papers"
SLSNET_TXT = PAPERS / "002_0b47992e26efa902.txt"
LANET_TXT = PAPERS / "000_07d483c125ec6a5c.txt"
SLSNET_TABLE5_HEADER = "Comparing the inference times of SLSNet"


def _run_json(capsys, *argv: str) -> tuple[int, dict]:
    rc = main(["bench", *argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_bench_two_tiny_models_matches_complexity(tmp_path, capsys):
    from lesion_lightning.models import create_model
    from lesion_lightning.utils.complexity import measure_complexity

    out = tmp_path / "bench"
    rc, doc = _run_json(capsys, "--models", "simple_unet,egeunet", "--sizes", "32,64", "--repeats", "3",
                        "--warmup", "1", "--threads", "1", "--output", str(out))
    assert rc == 0
    rows = doc["rows"]
    assert [(r["model"], r["size"]) for r in rows] == [("simple_unet", 32), ("simple_unet", 64),
                                                       ("egeunet", 32), ("egeunet", 64)]
    for r in rows:
        assert "error" not in r
        c = measure_complexity(create_model(r["model"]).eval(), (3, r["size"], r["size"]))
        assert r["params"] == c.params and r["macs"] == c.macs and r["flops"] == c.flops
        assert len(r["times_ms"]) == 3 and all(t > 0 for t in r["times_ms"])
        assert r["median_ms"] == sorted(r["times_ms"])[1]
        assert r["fps"] == pytest.approx(1000.0 / r["median_ms"])
    # MACs grow with the pixel count (x4 from 32 to 64 for these fully convolutional models)
    assert rows[1]["macs"] == pytest.approx(4 * rows[0]["macs"], rel=0.05)
    # the three outputs and the CPU note
    assert doc["note"] and "not comparable" in doc["note"]
    md = (out / "bench.md").read_text()
    assert "not comparable" in md and "| simple_unet | 64 |" in md
    with (out / "bench.csv").open() as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 4 and int(csv_rows[2]["macs"]) == rows[2]["macs"]
    assert json.loads((out / "bench.json").read_text())["rows"][0]["params"] == rows[0]["params"]


def _paper_line(path: Path, prefix: str, after: str = "") -> list[str]:
    """Cells of the first line starting with `prefix` after the first line containing `after`."""
    if not path.is_file():
        pytest.skip(f"paper text not found: {path}")
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    for line in lines[start:]:
        if line.startswith(prefix):
            return [re.sub(r"</?b>", "", c).strip() for c in line.split("\t")[1:]]
    raise AssertionError(f"no line starting with {prefix!r} in {path}")


@pytest.mark.parametrize("row", list(bench.SLSNET_TABLE5))
def test_slsnet_table5_transcription_matches_paper(row):
    cells = [float(c) for c in _paper_line(SLSNET_TXT, row, after=SLSNET_TABLE5_HEADER)]
    assert len(cells) == 9
    for i, size in enumerate((64, 128, 256)):
        assert bench.SLSNET_TABLE5[row][size] == tuple(cells[3 * i:3 * i + 3])


@pytest.mark.parametrize("model", list(bench.LANET_TABLE4))
def test_lanet_table4_transcription_matches_paper(model):
    name, params_m, layers, memory_mb, gflops = bench.LANET_TABLE4[model]
    prefix = name if model != "lanet" else "<b>LANET</b>"
    cells = _paper_line(LANET_TXT, prefix, after="**Table 4:** Model complexity")
    assert [float(cells[0]), int(cells[1]), float(cells[2]), float(cells[3])] == [params_m, layers, memory_mb, gflops]


def test_bench_slsnet_paper_columns(tmp_path, capsys):
    cells = [float(c) for c in _paper_line(SLSNET_TXT, "Proposed SLSNet", after=SLSNET_TABLE5_HEADER)]
    rc, doc = _run_json(capsys, "--models", "slsnet", "--sizes", "64", "--repeats", "1", "--warmup", "0", "--threads", "1",
                        "--output", str(tmp_path))
    assert rc == 0
    (row,) = doc["rows"]
    assert (row["paper_ms"], row["paper_fps"], row["paper_gmacs"]) == tuple(cells[0:3])
    assert row["median_ms"] > 0 and row["params"] > 2_000_000
    for size, offset in ((128, 3), (256, 6)):
        figures = bench.paper_figures("slsnet", size)
        assert (figures["paper_ms"], figures["paper_fps"], figures["paper_gmacs"]) == tuple(cells[offset:offset + 3])
    # a size the paper did not time: no paper latency, params still shown
    assert bench.paper_figures("slsnet", 96)["paper_ms"] is None
    assert bench.paper_figures("lanet", 224)["paper_gflops"] == 4.22
    assert bench.paper_figures("lanet", 256)["paper_gflops"] is None
    # paper-only rows (GAN-FCN, ENet) are listed in the markdown
    md = (tmp_path / "bench.md").read_text()
    assert "GAN-FCN" in md and "ENet" in md and "| slsnet | 64 |" in md


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--models", "nosuchnet"], "--models: unknown model(s) nosuchnet"),
        (["--models", ""], "--models: no model name"),
        (["--sizes", "64,abc"], "--sizes: 'abc'"),
        (["--sizes", "0"], "--sizes: 0"),
        (["--backend", "tensorrt"], "--backend: unknown 'tensorrt'"),
        (["--device", "tpu"], "--device: unknown 'tpu'"),
        (["--repeats", "0"], "--repeats"),
    ],
)
def test_bench_bad_options(tmp_path, capsys, argv, expected):
    rc = main(["bench", "--models", "simple_unet", "--sizes", "32", *argv, "--output", str(tmp_path)]
              if "--models" not in argv else ["bench", "--sizes", "32", *argv, "--output", str(tmp_path)])
    assert rc == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


def test_bench_onnxruntime_backend(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rc, doc = _run_json(capsys, "--models", "simple_unet", "--sizes", "32", "--repeats", "2", "--warmup", "1",
                        "--backend", "onnxruntime", "--threads", "1", "--output", str(tmp_path))
    assert rc == 0
    (row,) = doc["rows"]
    assert "error" not in row and row["backend"] == "onnxruntime" and row["provider"] == "CPUExecutionProvider"
    assert row["median_ms"] > 0


@pytest.mark.slow
def test_bench_compile_backend(tmp_path, capsys):
    rc, doc = _run_json(capsys, "--models", "simple_unet", "--sizes", "32", "--repeats", "2", "--warmup", "1",
                        "--backend", "compile", "--threads", "1", "--output", str(tmp_path))
    assert rc == 0 and "error" not in doc["rows"][0] and doc["rows"][0]["median_ms"] > 0

"""benchmarks/gpu_figures.py, the prepared GPU script, runs end to end (on CPU here: no GPU in CI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_figures  # noqa: E402


def test_gpu_script_measures_inference_and_training_rows(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_figures.main(["--device", "cpu", "--quick", "--models", "scsonet", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    phases = [(r["phase"], r.get("precision")) for r in rows]
    assert phases == [("inference", "fp32"), ("inference", "bf16"), ("training", "fp32")]
    assert all(r.get("fps", 1) > 0 and r.get("images_per_s", 1) > 0 for r in rows)
    assert "0.6 GB" in capsys.readouterr().out  # the paper's figure printed beside ours


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_gpu_script_without_cuda_says_so():
    with pytest.raises(SystemExit, match="no CUDA device here"):
        gpu_figures.main(["--models", "scsonet"])

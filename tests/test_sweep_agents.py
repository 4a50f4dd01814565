"""Several `sweep local` agents on one sweep (issue 15): each trial runs once, in its own folders."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lesion_lightning.sweeps.local import LocalSweep
from test_sweeps import _fake_sweep

REPO = Path(__file__).resolve().parent.parent


def _agent(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lesion_lightning", "sweep", "local", str(config), "--output",
                             str(out), "--count", "10", *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_agents_on_one_grid_run_each_point_once_in_their_own_folders(tmp_path):
    config = _fake_sweep(tmp_path, "grid", {"x": {"values": [1, 2, 3, 4, 5, 6]}, "sleep": {"value": 1.5}})
    out = tmp_path / "shared"
    first = _agent(config, out)
    deadline = time.monotonic() + 60
    while not (out / "sweep.json").is_file():  # the first agent has claimed its first trial
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.1)
    second = _agent(config, out, "--resume")  # joins the sweep
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    state = json.loads((out / "sweep.json").read_text())
    trials = state["trials"]
    assert sorted(t["number"] for t in trials) == [1, 2, 3, 4, 5, 6]
    assert sorted(t["params"]["x"] for t in trials) == [1, 2, 3, 4, 5, 6]  # no grid point twice
    assert {t["state"] for t in trials} == {"finished"} and state["stopped"] == "exhausted"
    assert len({t["agent"] for t in trials}) == 2, "one agent ran everything: the test proved nothing"
    assert len({t["run_id"] for t in trials}) == 6
    for t in trials:  # each trial's folder holds its own command and metric, nobody else's
        log = Path(t["log_path"])
        assert log.parent.name == f"trial-{t['number']:03d}" and t["run_id"] in log.read_text()
        assert t["metric"] == pytest.approx(t["params"]["x"] / 10)


def test_a_second_new_sweep_in_the_same_folder_is_refused_before_writing(tmp_path):
    config = yaml.safe_load(_fake_sweep(tmp_path, "grid", {"x": {"values": [1, 2]}}).read_text())
    out = tmp_path / "shared"
    first, second = LocalSweep(config, out, count=1, cwd=REPO), LocalSweep(config, out, count=1, cwd=REPO)
    first.run()  # both were started on an empty folder; the first claimed it
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match=f"holds sweep {first.sweep_id} of another agent.*--resume"):
        second.run()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_wandb_agent_trial_gets_the_run_id_as_its_folder(tmp_path, monkeypatch):
    # `sweep agent` trials are started by wandb with WANDB_SWEEP_ID/WANDB_RUN_ID: two agents starting a trial in
    # the same second must not share a timestamped folder.
    from lesion_lightning.training.cli import build_cli

    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_RUN_ID", "run42xyz")
    cli = build_cli(["--config", str(REPO / "experiments" / "demo.yaml"), f"--output_root={tmp_path}", "--logger=none"],
                    run=False)
    assert cli.run_dir == tmp_path / "demo" / "run42xyz"

"""Sweeps: the YAMLs are valid W&B sweeps, `sweep local` runs trials offline and ranks them, a grid stops
when exhausted, failed trials are recorded, `sweep create/agent` fail fast without a W&B server."""

from __future__ import annotations

import csv
import http.server
import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from lesion_lightning.cli import main
from lesion_lightning.sweeps.spec import (
    SweepConfigError,
    expand_command,
    import_sweeps,
    load_sweep_config,
    sweep_command_args,
    write_agent_files,
)
from lesion_lightning.utils.wandb_offline import find_offline_runs, read_run

REPO = Path(__file__).resolve().parent.parent
SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
DEAD_URL = "http://127.0.0.1:9"


def _leaderboard(out: Path) -> list[dict[str, str]]:
    with open(out / "leaderboard.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _sweep_json(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


# -- the sweep YAMLs --------------------------------------------------------------------------------
def test_sweep_yamls_are_valid_wandb_sweeps():
    sweeps = import_sweeps()
    names = {p.stem for p in SWEEPS}
    assert {"demo", "demo_grid", "lanet_sgd", "scsonet_adamw", "medlitenet_adamw"} <= names
    for path in SWEEPS:
        config = yaml.safe_load(path.read_text())
        assert sweeps.schema_violations_from_proposed_config(config) == [], path.name
        assert config["metric"] == {"name": "val/dice", "goal": "maximize"}, path.name
        assert config["method"] in ("bayes", "random", "grid")
        command = config["command"]
        # values come in as a JSON config file (not `${args}`: None would render as --x=None)
        assert "${args_json_file}" in command and "${args}" not in command, path.name
        assert command[command.index("${args_json_file}") - 1] == "--config"
        for i, tok in enumerate(command):
            if tok == "--config" and not command[i + 1].startswith("${"):
                assert (REPO / command[i + 1]).is_file(), f"{path.name}: {command[i + 1]} is missing"
        for name in config["parameters"]:
            assert name.split(".")[0] in ("model", "data", "trainer"), f"{path.name}: {name}"
        # the engine can propose a first trial from it
        proposal = sweeps.next_run(config, [], validate=True)
        assert set(proposal.config) == set(config["parameters"])
    for path in SWEEPS:
        if yaml.safe_load(path.read_text()).get("early_terminate"):
            break
    else:
        pytest.fail("no sweep config uses early_terminate")
    bayes = [p for p in SWEEPS if yaml.safe_load(p.read_text())["method"] == "bayes"]
    assert bayes and all(yaml.safe_load(p.read_text())["early_terminate"]["type"] == "hyperband" for p in bayes)


def test_invalid_sweep_config_is_rejected_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: sideways\nmetric: {name: val/dice, goal: maximize}\nparameters: {x: {values: [1]}}\n")
    with pytest.raises(SweepConfigError, match="sideways"):
        load_sweep_config(bad)
    assert main(["sweep", "validate", str(SWEEPS[0]), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "ok:" in captured.out and "sideways" in captured.err


def test_trial_command_uses_wandbs_macros(tmp_path):
    params = {"model.init_args.lr": 0.01, "data.augment": None, "model.init_args.loss": {"name": "bce"}}
    # `${args}` is wandb's own rendering: None becomes --x=None (why the configs use the JSON file)
    assert "--data.augment=None" in sweep_command_args(params)["args"]
    param_path, json_path = write_agent_files(tmp_path, "swp", "run1", params)
    assert param_path == tmp_path / "wandb" / "sweep-swp" / "config-run1.yaml"
    assert yaml.safe_load(param_path.read_text())["model.init_args.lr"] == {"value": 0.01}
    assert json.loads(json_path.read_text()) == params
    argv = expand_command(["${env}", "${interpreter}", "${program}", "fit", "--config", "${args_json_file}"],
                          params, program="train.py", args_json_file=json_path)
    assert argv[1:] == [sys.executable, "train.py", "fit", "--config", str(json_path)]
    with pytest.raises(SweepConfigError, match="unknown macro"):
        expand_command(["${nonsense}"], params, program=None, args_json_file=json_path)


# -- sweep local: real tiny trials ----------------------------------------------------------------
def test_local_random_sweep_three_trials_of_the_tiny_model(tmp_path, ham10000_root, monkeypatch):
    monkeypatch.chdir(REPO)  # the sweep command names experiments/demo.yaml relative to the repository
    out = tmp_path / "sweep"
    rc = main(["sweep", "local", str(REPO / "experiments" / "sweeps" / "demo.yaml"), "--count", "3", "--seed", "3",
               "--output", str(out), f"--trial-args=--data.root={ham10000_root} --data.cache={tmp_path / 'cache'}"])
    assert rc == 0
    rows = _leaderboard(out)
    assert len(rows) == 3 and {r["state"] for r in rows} == {"finished"}
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    dice = [float(r["val/dice"]) for r in rows]
    assert dice == sorted(dice, reverse=True)
    assert len(set(dice)) > 1, "the demo sweep's trials should not tie"
    state = _sweep_json(out)
    assert state["stopped"] == "count" and len(state["trials"]) == 3
    for row in rows:
        trial = next(t for t in state["trials"] if t["run_id"] == row["run_id"])
        run_dir = Path(trial["run_dir"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        last_epoch = metrics.get("val_last_epoch", metrics["val"])  # W&B's summary: the last logged value
        assert float(row["val/dice"]) == pytest.approx(last_epoch["dice"], abs=1e-9)
        # one offline W&B run per trial, its id set by the loop, the sweep values in its config
        (run_file,) = find_offline_runs(run_dir)
        run = read_run(run_file)
        assert run.run_id == row["run_id"] and run.finished
        assert run.project == "lesion-lightning"  # not the checkout folder's name
        assert run.summary["val/dice"] == pytest.approx(last_epoch["dice"])
        for name, value in trial["params"].items():
            assert run.config[name] == value  # WANDB_SWEEP_PARAM_PATH landed in the run config
        # ...and the training CLI got them from the command line (its resolved config)
        assert run.config["cli"]["model"]["init_args"]["lr"] == pytest.approx(trial["params"]["model.init_args.lr"])
        assert run.config["cli"]["data"]["batch_size"] == trial["params"]["data.batch_size"]
        assert run.config["cli"]["data"]["image_size"] == 64
        assert float(row["model.init_args.lr"]) == pytest.approx(trial["params"]["model.init_args.lr"])
    assert "| rank | trial |" in (out / "leaderboard.md").read_text()
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_local_grid_of_the_tiny_model_stops_after_two(tmp_path, ham10000_root, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "grid"
    rc = main(["sweep", "local", str(REPO / "experiments" / "sweeps" / "demo_grid.yaml"), "--count", "5",
               "--output", str(out), f"--trial-args=--data.root={ham10000_root} --data.cache={tmp_path / 'cache'}"])
    assert rc == 0
    rows = _leaderboard(out)
    assert sorted(int(r["data.batch_size"]) for r in rows) == [2, 4]
    assert _sweep_json(out)["stopped"] == "exhausted"


@pytest.mark.slow
def test_ddp_trial_creates_one_wandb_run(tmp_path, ham10000_root, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "ddp"
    sweep = tmp_path / "one.yaml"
    config = yaml.safe_load((REPO / "experiments" / "sweeps" / "demo_grid.yaml").read_text())
    config["parameters"]["data.batch_size"] = {"values": [2]}
    sweep.write_text(yaml.safe_dump(config))
    extra = (f"--data.root={ham10000_root} --data.cache={tmp_path / 'cache'} --trainer.accelerator=cpu "
             "--trainer.devices=2 --trainer.strategy=ddp")
    assert main(["sweep", "local", str(sweep), "--count", "1", "--output", str(out), f"--trial-args={extra}"]) == 0
    (trial,) = _sweep_json(out)["trials"]
    assert trial["state"] == "finished"
    assert len(find_offline_runs(out)) == 1
    assert read_run(find_offline_runs(out)[0]).run_id == trial["run_id"]


# -- sweep local: the loop's logic, with a fast stand-in trial program ---------------------------
FAKE_TRIAL = """
import json, os, sys
args = sys.argv[1:]
params = json.load(open(args[args.index("--config") + 1]))   # hyperparameters from the command line
if params.get("sleep"):
    import time
    time.sleep(params["sleep"])
if params.get("fail"):
    print("trial failing on purpose", file=sys.stderr)
    sys.exit(3)
import wandb
run = wandb.init(project="ignored-in-a-sweep")
assert run.id == os.environ["WANDB_RUN_ID"] and run.sweep_id == os.environ["WANDB_SWEEP_ID"]
if not params.get("no_metric"):
    run.log({"val/dice": params["x"] / 10.0})
run.finish()
"""


def _fake_sweep(tmp_path: Path, method: str, parameters: dict) -> Path:
    program = tmp_path / "fake_trial.py"
    program.write_text(textwrap.dedent(FAKE_TRIAL))
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"fake_{method}", "program": str(program), "method": method,
        "metric": {"name": "val/dice", "goal": "maximize"},
        "command": ["${env}", "${interpreter}", "${program}", "--config", "${args_json_file}"],
        "parameters": parameters,
    }))
    return path


def test_local_grid_of_two_points_stops_after_two(tmp_path):
    path = _fake_sweep(tmp_path, "grid", {"x": {"values": [3, 7]}, "fixed": {"value": None}})
    out = tmp_path / "out"
    assert main(["sweep", "local", str(path), "--count", "10", "--output", str(out)]) == 0
    rows = _leaderboard(out)
    assert [(r["trial"], r["x"], r["state"]) for r in rows] == [("2", "7", "finished"), ("1", "3", "finished")]
    assert [float(r["val/dice"]) for r in rows] == [pytest.approx(0.7), pytest.approx(0.3)]
    state = _sweep_json(out)
    assert state["stopped"] == "exhausted" and state["best_trial"] == 2
    for trial in state["trials"]:
        run = read_run(trial["run_file"])
        assert run.config["x"] == trial["params"]["x"] and run.config["fixed"] is None
        assert run.summary["val/dice"] == pytest.approx(trial["metric"])


def test_resume_continues_a_grid_without_repeating_points(tmp_path):
    path = _fake_sweep(tmp_path, "grid", {"x": {"values": [1, 2, 3]}})
    out = tmp_path / "out"
    argv = ["sweep", "local", str(path), "--output", str(out)]
    assert main([*argv, "--count", "2"]) == 0
    first = _sweep_json(out)
    assert first["stopped"] == "count" and len(first["trials"]) == 2
    with pytest.raises(SystemExit, match="already holds a sweep"):
        main([*argv, "--count", "5"])
    assert main([*argv, "--count", "5", "--resume"]) == 0
    state = _sweep_json(out)
    assert state["sweep_id"] == first["sweep_id"] and state["stopped"] == "exhausted"
    assert [t["number"] for t in state["trials"]] == [1, 2, 3]
    assert sorted(t["params"]["x"] for t in state["trials"]) == [1, 2, 3]
    assert len(_leaderboard(out)) == 3


def test_failed_trials_are_recorded_not_dropped(tmp_path):
    path = _fake_sweep(tmp_path, "grid", {"x": {"value": 5},
                                          "fail": {"values": [False, True]},
                                          "no_metric": {"values": [False, True]}})
    out = tmp_path / "out"
    assert main(["sweep", "local", str(path), "--count", "4", "--output", str(out)]) == 0
    trials = {(t["params"]["fail"], t["params"]["no_metric"]): t for t in _sweep_json(out)["trials"]}
    assert len(trials) == 4
    ok = trials[(False, False)]
    assert ok["state"] == "finished" and ok["metric"] == pytest.approx(0.5)
    for key in ((True, False), (True, True)):
        t = trials[key]
        assert t["state"] == "failed" and t["exit_code"] == 3 and t["metric"] is None
        assert "exit code 3" in t["error"] and "failing on purpose" in Path(t["log_path"]).read_text()
    silent = trials[(False, True)]
    assert silent["state"] == "failed" and silent["exit_code"] == 0 and "val/dice" in silent["error"]
    rows = _leaderboard(out)
    assert len(rows) == 4 and rows[0]["state"] == "finished" and rows[0]["rank"] == "1"
    assert {r["state"] for r in rows[1:]} == {"failed"} and all(r["rank"] == "" for r in rows[1:])
    assert all(Path(r["log"]).is_file() for r in rows)
    assert "failed" in (out / "leaderboard.md").read_text()


def test_all_trials_failing_exits_nonzero(tmp_path):
    path = _fake_sweep(tmp_path, "random", {"x": {"values": [1, 2]}, "fail": {"value": True}})
    out = tmp_path / "out"
    assert main(["sweep", "local", str(path), "--count", "2", "--output", str(out)]) == 1
    assert [r["state"] for r in _leaderboard(out)] == ["failed", "failed"]


def test_trial_timeout_kills_and_records_the_trial(tmp_path):
    path = _fake_sweep(tmp_path, "grid", {"x": {"value": 1}, "sleep": {"value": 60}})
    out = tmp_path / "out"
    start = time.monotonic()
    assert main(["sweep", "local", str(path), "--count", "3", "--trial-timeout", "3", "--output", str(out)]) == 1
    assert time.monotonic() - start < 40
    (trial,) = _sweep_json(out)["trials"]
    assert trial["state"] == "failed" and "timed out after 3 s" in trial["error"] and trial["exit_code"] != 0


def test_bayes_engine_gets_the_finished_runs(tmp_path):
    # bayes needs the metric of earlier runs: 3 proposals in a row succeed only if the loop feeds them back
    path = _fake_sweep(tmp_path, "bayes", {"x": {"min": 0.0, "max": 10.0}})
    out = tmp_path / "out"
    assert main(["sweep", "local", str(path), "--count", "3", "--seed", "0", "--output", str(out)]) == 0
    state = _sweep_json(out)
    assert [t["state"] for t in state["trials"]] == ["finished"] * 3
    xs = [t["params"]["x"] for t in state["trials"]]
    assert len(set(xs)) == 3 and all(0.0 <= x <= 10.0 for x in xs)
    assert all(t["metric"] == pytest.approx(t["params"]["x"] / 10.0) for t in state["trials"])


# -- sweep create / agent need a server: fail fast and say so ---------------------------------------
def _timed(argv: list[str]) -> tuple[int, float]:
    start = time.monotonic()
    rc = main(argv)
    return rc, time.monotonic() - start


def test_sweep_create_and_agent_fail_fast_without_a_server(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_BASE_URL", DEAD_URL)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    rc, seconds = _timed(["sweep", "create", str(REPO / "experiments" / "sweeps" / "demo.yaml"), "--project", "p"])
    err = capsys.readouterr().err
    assert rc == 1 and seconds < 15
    assert f"cannot reach the W&B server at {DEAD_URL}" in err and "sweep local" in err
    rc, seconds = _timed(["sweep", "agent", "me/p/abc123", "--count", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and seconds < 15 and f"cannot reach the W&B server at {DEAD_URL}" in err


def test_sweep_agent_refuses_offline_mode(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["sweep", "agent", "abc123"]) == 1
    assert "WANDB_MODE=offline" in capsys.readouterr().err


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_sweep_create_not_logged_in(monkeypatch, tmp_path, capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setenv("WANDB_BASE_URL", url)
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        rc, seconds = _timed(["sweep", "create", str(REPO / "experiments" / "sweeps" / "demo.yaml")])
        err = capsys.readouterr().err
        assert rc == 1 and seconds < 15
        assert f"not logged in to the W&B server at {url}" in err and "wandb login" in err
    finally:
        server.shutdown()

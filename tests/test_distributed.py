"""Multi-node DDP on localhost: a real 2-node torchrun job (gloo, CPU) through the CLI.

Each node is one `torchrun --nnodes 2 --nproc-per-node 1 --node-rank N` agent, exactly the command of
docs/training.md. tests/write_audit records which process wrote which file under the output root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lesion_lightning.paths import sample_dataset_root

from slurm_cluster import SlurmCluster, missing_programs

from distributed_launch import MULTI_NODE, REPO, demo_args, env, run_nodes, tiny_args, val_metrics, writes_by_rank

EXPERIMENTS = REPO / "experiments"
SLSNET = (str(EXPERIMENTS / "slsnet" / "isic2018.yaml"), str(EXPERIMENTS / "slsnet" / "smoke.yaml"))
ENSEMBLE = (str(EXPERIMENTS / "medlitenet" / "ensemble.yaml"),)
COMPARED = ("dice", "iou", "accuracy", "sensitivity", "specificity", "dice_per_image", "iou_per_image")


def _assert_ok(results: list[subprocess.CompletedProcess]) -> str:
    for node, result in enumerate(results):
        assert result.returncode == 0, f"node {node}:\n{result.stdout[-4000:]}"
    output = "".join(r.stdout for r in results)
    assert "sync_dist" not in output, "a metric is logged without reduction across ranks"
    return output


def _assert_rank_zero_wrote_everything(tmp_path: Path, run: Path) -> None:
    writes = writes_by_rank(tmp_path)
    assert writes.get("1", set()) == set(), f"rank 1 wrote into the run folder: {sorted(writes['1'])}"
    assert any(p.endswith("metrics.json") for p in writes["0"])
    assert [p.name for p in run.parent.iterdir()] == [run.name], "more than one run folder"


def _validate_single_process(tmp_path: Path, args: list[str], ckpt: Path) -> dict[str, float]:
    """The checkpoint validated by one process (no DDP) on the same validation images."""
    cmd = [sys.executable, "-m", "lesion_lightning", *args, f"--ckpt_path={ckpt}", "--run_name=single"]
    out = subprocess.run(cmd, env=env(tmp_path, WRITE_AUDIT_DIR=""), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return val_metrics(ckpt.parent.parent.parent / "single")


def _assert_same_metrics(ddp: dict[str, float], single: dict[str, float]) -> None:
    for key in COMPARED:
        assert abs(ddp[key] - single[key]) < 1e-6, (key, ddp[key], single[key])


def _one_process_fit(tmp_path: Path, root: Path) -> Path:
    """Checkpoints of a one-epoch single-process demo fit."""
    cmd = [sys.executable, "-m", "lesion_lightning", *demo_args(tmp_path, root, "fit", "--run_name=one",
                                                                 "--trainer.max_epochs=1")]
    out = subprocess.run(cmd, env=env(tmp_path, WRITE_AUDIT_DIR=""), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path / "runs" / "demo" / "one" / "checkpoints"


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    """One 2-node fit of the plain SegmentationTask (shared by the tests below: it takes ~25 s)."""
    root = sample_dataset_root("ham10000")
    if root is None:
        pytest.skip("real ham10000 sample not found (expected ../shared/data/ham10000 beside the checkout)")
    tmp_path = tmp_path_factory.mktemp("multinode")
    args = demo_args(tmp_path, root, "fit", "--run_name=mn", "--trainer.strategy=ddp", *MULTI_NODE)
    output = _assert_ok(run_nodes(tmp_path, args))
    assert "MEMBER: 2/2" in output, "the two nodes did not form one job"
    return tmp_path


@pytest.mark.slow
def test_two_node_fit_writes_one_run_folder_from_rank_zero(plain_run) -> None:
    run = plain_run / "runs" / "demo" / "mn"
    _assert_rank_zero_wrote_everything(plain_run, run)
    for name in ("config.yaml", "split.json", "environment.json", "metrics.json", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert max(metrics[k]["epoch"] for k in ("val", "val_last_epoch") if k in metrics) == 1  # both epochs ran


@pytest.mark.slow
def test_two_node_validation_metrics_equal_one_process(plain_run, ham10000_root) -> None:
    # The 6 validation images are split 3 + 3 over the nodes; torchmetrics sums the states across ranks, so
    # the pooled and per-image metrics are the single-process ones (to float32 rounding of the sums).
    run = plain_run / "runs" / "demo" / "mn"
    ddp = val_metrics(run)
    best = run / "checkpoints" / f"best-{ddp['epoch']:03d}.ckpt"
    single = _validate_single_process(plain_run, demo_args(plain_run, ham10000_root, "validate"), best)
    _assert_same_metrics(ddp, single)


@pytest.mark.slow
def test_ensemble_validates_on_two_nodes_as_on_one(plain_run, ham10000_root) -> None:
    # EnsembleTask works under DDP for validate/test (kfold has no test part, so validate): each rank measures the members' val Dice on the whole
    # validation loader (torchmetrics' sync then counts it twice, a ratio Dice does not change).
    ckpts = sorted(str(p) for p in (plain_run / "runs" / "demo" / "mn" / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) == 2  # best-000 or best-001, and last
    args = tiny_args(plain_run, ham10000_root, "validate", f"--model.init_args.members=[{','.join(ckpts)}]",
                     "--experiment=ens", configs=ENSEMBLE)
    _assert_ok(run_nodes(plain_run, [*args, "--run_name=ddp", "--trainer.strategy=ddp", *MULTI_NODE]))
    single = subprocess.run([sys.executable, "-m", "lesion_lightning", *args, "--run_name=single"],
                            env=env(plain_run, WRITE_AUDIT_DIR=""), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    runs = plain_run / "runs" / "ens"
    _assert_same_metrics(val_metrics(runs / "ddp"), val_metrics(runs / "single"))
    assert (runs / "ddp" / "ensemble.json").read_text() == (runs / "single" / "ensemble.json").read_text()


@pytest.mark.slow
def test_ensemble_fit_is_refused_on_every_node(tmp_path, ham10000_root) -> None:
    plain = _one_process_fit(tmp_path, ham10000_root)
    members = f"--model.init_args.members=[{plain / 'best-000.ckpt'},{plain / 'last.ckpt'}]"
    args = tiny_args(tmp_path, ham10000_root, "fit", members, "--run_name=ens", "--trainer.strategy=ddp", *MULTI_NODE,
                     configs=ENSEMBLE)
    for result in run_nodes(tmp_path, args, timeout=120):
        assert result.returncode != 0
        assert "fit each member with its own preset" in result.stdout


@pytest.mark.slow
def test_slsnet_adversarial_two_node_fit(tmp_path, ham10000_root) -> None:
    args = tiny_args(tmp_path, ham10000_root, "fit", "--run_name=mn", *MULTI_NODE,
                     "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.max_epochs=1", configs=SLSNET)
    _assert_ok(run_nodes(tmp_path, args))
    run = tmp_path / "runs" / "slsnet_smoke" / "mn"
    _assert_rank_zero_wrote_everything(tmp_path, run)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 * 6  # 12 images per node, batch 2: 6 batches x (D step + G step)
    single = _validate_single_process(tmp_path, tiny_args(tmp_path, ham10000_root, "validate", configs=SLSNET),
                                      run / "checkpoints" / "last.ckpt")
    _assert_same_metrics(val_metrics(run), single)


@pytest.mark.slow
def test_slsnet_plain_ddp_is_refused_on_every_node(tmp_path, ham10000_root) -> None:
    args = tiny_args(tmp_path, ham10000_root, "fit", "--run_name=mn", *MULTI_NODE, "--trainer.strategy=ddp",
                     configs=SLSNET)
    for result in run_nodes(tmp_path, args, timeout=120):
        assert result.returncode != 0
        assert "ddp_find_unused_parameters_true" in result.stdout


def test_external_launch_without_run_name_is_refused(tmp_path, ham10000_root) -> None:
    # torchrun/srun start each rank on its own: a timestamped folder would differ between nodes.
    cmd = [sys.executable, "-m", "lesion_lightning", *demo_args(tmp_path, ham10000_root, "fit")]
    out = subprocess.run(cmd, env=env(tmp_path, WORLD_SIZE="2", RANK="0", WRITE_AUDIT_DIR=""), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert "needs --run_name" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


# -- SLURM: a real one-node cluster with two task slots (tests/slurm_cluster.py) -----------------------
@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(f"needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge): no {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd and munged for a throwaway cluster needs root")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _slurm_env(cluster: SlurmCluster, tmp_path: Path) -> dict[str, str]:
    """The job's environment (sbatch passes it on): this venv's `lesion-lightning` first on PATH."""
    out = {**env(tmp_path), "SLURM_CONF": cluster.env()["SLURM_CONF"]}
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out["PATH"]])
    return out


def _sbatch(cluster: SlurmCluster, tmp_path: Path, *args: str, timeout: float = 400) -> int:
    cmd = ["sbatch", "--parsable", f"--output={tmp_path}/slurm-%A_%a.out", *args]
    job = subprocess.run(cmd, env=_slurm_env(cluster, tmp_path), cwd=REPO, capture_output=True, text=True, timeout=30)
    assert job.returncode == 0, job.stderr
    cluster.wait_idle_queue(timeout)
    return int(job.stdout.strip().split(";")[0])


@pytest.mark.slow
def test_sbatch_script_trains_two_tasks_through_lightnings_slurm_detection(slurm, tmp_path, ham10000_root) -> None:
    args = demo_args(tmp_path, ham10000_root, "fit")[1:]  # fit.sbatch adds the subcommand, devices and run name
    job = _sbatch(slurm, tmp_path, str(REPO / "experiments" / "slurm" / "fit.sbatch"), *args)
    output = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert slurm.state(job) == "COMPLETED", output[-4000:]
    assert "MEMBER: 2/2" in output and "sync_dist" not in output
    run = tmp_path / "runs" / "demo" / str(job)
    _assert_rank_zero_wrote_everything(tmp_path, run)
    best = run / "checkpoints" / f"best-{val_metrics(run)['epoch']:03d}.ckpt"
    single = _validate_single_process(tmp_path, demo_args(tmp_path, ham10000_root, "validate"), best)
    _assert_same_metrics(val_metrics(run), single)


@pytest.mark.slow
def test_job_array_runs_a_table_then_reproduce_aggregates(slurm, tmp_path, capsys) -> None:
    from lesion_lightning.cli import main
    from test_reproduce import TINY

    spec = tmp_path / "tiny-table.yaml"
    spec.write_text(TINY)
    table = [str(spec), "--profile", "smoke", "--runs-root", str(tmp_path / "runs"), "--output", str(tmp_path / "out")]
    _sbatch(slurm, tmp_path, "--array=0-3", str(REPO / "experiments" / "slurm" / "reproduce-array.sbatch"), *table)
    outputs = sorted(tmp_path.glob("slurm-*.out"))
    assert len(outputs) == 4 and all("finished; aggregate" in p.read_text() for p in outputs), \
        [p.read_text()[-1500:] for p in outputs]
    assert main(["reproduce", *table, "--no-run"]) == 0
    assert "4 jobs, 4 already finished" in capsys.readouterr().out
    assert (tmp_path / "out" / "tiny-table.csv").is_file()


def test_docs_show_the_sbatch_scripts_the_tests_submit() -> None:
    docs = (REPO / "docs" / "training.md").read_text()
    assert (EXPERIMENTS / "slurm" / "fit.sbatch").read_text() in docs
    assert "sbatch --array=0-9 experiments/slurm/reproduce-array.sbatch" in docs
    assert "torchrun --nnodes 2 --nproc-per-node 1 --node-rank 0 --master-addr 127.0.0.1" in docs


# -- bad input: bounded failures, nothing left running, nothing corrupted ------------------------------
def _no_process_left(results_or_procs) -> None:
    import signal

    for pid in results_or_procs:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        os.killpg(pid, signal.SIGKILL)
        raise AssertionError(f"process group {pid} was still running")


@pytest.mark.slow
def test_node_that_cannot_reach_the_master_fails_within_the_rendezvous_timeout(tmp_path, ham10000_root) -> None:
    from distributed_launch import free_port, torchrun

    port = free_port()  # nobody listens: node 0 never starts
    cmd = torchrun(1, port, 2, "--rdzv-conf", "timeout=10")
    started = time.monotonic()
    proc = subprocess.Popen([*cmd, *demo_args(tmp_path, ham10000_root, "fit", "--run_name=mn", *MULTI_NODE,
                                              "--trainer.strategy=ddp")],
                            env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert f"timed out after 10000ms while trying to connect to (127.0.0.1, {port})" in out, out[-3000:]
    assert time.monotonic() - started < 120
    _no_process_left([proc.pid])
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_rank_killed_mid_epoch_stops_both_nodes_and_keeps_the_last_checkpoint(tmp_path, ham10000_root) -> None:
    import signal

    from distributed_launch import free_port, torchrun

    slow = ["--trainer.callbacks+=slow_step_callback.SlowStep", "--trainer.callbacks.seconds=0.5"]
    args = demo_args(tmp_path, ham10000_root, "fit", "--run_name=mn", *MULTI_NODE, "--trainer.strategy=ddp",
                     "--trainer.max_epochs=3", *slow)
    port = free_port()
    procs = [subprocess.Popen([*torchrun(n, port), *args], env=env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) for n in (0, 1)]
    run = tmp_path / "runs" / "demo" / "mn"
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "last.ckpt").exists():  # epoch 0 done; epoch 1 takes >= 3 s
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no epoch finished"
        time.sleep(0.2)
    time.sleep(1.0)
    (rank1,) = [int(p.name.split("-")[1][:-4]) for p in (tmp_path / "audit").glob("1-*.txt")]
    os.kill(rank1, signal.SIGKILL)
    killed = time.monotonic()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs), outs[0][-2000:]
    assert "Signal 9 (SIGKILL) received by PID" in outs[1], outs[1][-2000:]  # node 1 names the cause
    assert time.monotonic() - killed < 120
    _no_process_left([p.pid for p in procs])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0  # the epoch before the kill, whole (atomic checkpoint writes)
    assert json.loads((run / "metrics.json").read_text())["val"]["epoch"] == 0
    print(f"both nodes stopped {time.monotonic() - killed:.1f} s after rank 1 was killed")


def test_a_run_folder_another_process_uses_is_refused_untouched(tmp_path, ham10000_root) -> None:
    from lesion_lightning.training.cli import build_cli

    run = tmp_path / "runs" / "demo" / "busy"
    run.mkdir(parents=True)
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'otherhost:123'); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run / ".lock")], stdout=subprocess.PIPE, text=True)
    args = demo_args(tmp_path, ham10000_root, "fit", "--run_name=busy", "--trainer.fast_dev_run=true")
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match=r"run folder .*busy is in use by another process \(otherhost:123\)"):
            build_cli(args)
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written beside the other's lock
    finally:
        holder.kill()
        holder.wait()
    build_cli(args)  # free again: the run goes ahead
    assert (run / "environment.json").is_file()

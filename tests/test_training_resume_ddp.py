"""Interrupted training resumes to the same result; 2-process DDP gives the single-process metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
DEMO = str(REPO / "experiments" / "demo.yaml")


def _cli(tmp_path: Path, root: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "lesion_lightning", *args[:1], "--config", DEMO,
        f"--data.root={root}", "--data.image_size=32", "--data.batch_size=2", f"--data.cache={tmp_path / 'cache'}",
        "--model.init_args.model_kwargs={base_width: 4}", f"--output_root={tmp_path / 'runs'}", "--logger=none",
        "--trainer.enable_progress_bar=false", "--trainer.deterministic=true", *args[1:],
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, ham10000_root):
    epochs = "--trainer.max_epochs=3"
    subprocess.run(_cli(tmp_path, ham10000_root, "fit", epochs, "--run_name=full"), check=True, env=_env(),
                   capture_output=True, timeout=600)

    slow = ["--trainer.callbacks+=slow_step_callback.SlowStep", "--trainer.callbacks.seconds=0.25"]
    run = tmp_path / "runs" / "demo" / "killed"
    proc = subprocess.Popen(_cli(tmp_path, ham10000_root, "fit", epochs, "--run_name=killed", *slow), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint after epoch 0"
        time.sleep(0.1)
    time.sleep(1.0)  # well inside epoch 1 (12 slowed steps of >= 0.25 s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _weights_epoch(run / "checkpoints" / "last.ckpt") == 0, "the kill came after epoch 1 had finished"

    subprocess.run(_cli(tmp_path, ham10000_root, "fit", epochs, "--ckpt_path=last"), check=True, env=_env(),
                   capture_output=True, timeout=600)
    full = _weights(tmp_path / "runs" / "demo" / "full" / "checkpoints" / "last.ckpt")
    resumed = _weights(run / "checkpoints" / "last.ckpt")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), f"{key} differs after resume"
    m_full = json.loads((tmp_path / "runs" / "demo" / "full" / "metrics.json").read_text())["val"]
    m_resumed = json.loads((run / "metrics.json").read_text())["val"]
    assert m_full["epoch"] == m_resumed["epoch"] == 2
    assert m_full["dice"] == m_resumed["dice"]


def _weights_epoch(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]


def test_ddp_two_cpu_processes_match_single_process(tmp_path, ham10000_root):
    # kfold 5 on the 30-lesion sample: 6 validation images, an even count, so DDP pads nothing.
    common = ("--data.split=kfold", "--data.folds=5", "--data.fold=0")
    subprocess.run(_cli(tmp_path, ham10000_root, "validate", *common, "--run_name=single"), check=True,
                   env=_env(), capture_output=True, timeout=600)
    out = subprocess.run(
        _cli(tmp_path, ham10000_root, "validate", *common, "--run_name=ddp", "--trainer.strategy=ddp",
             "--trainer.devices=2", "--trainer.accelerator=cpu"),
        env=_env(), capture_output=True, timeout=600, text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    single = json.loads((tmp_path / "runs" / "demo" / "single" / "metrics.json").read_text())["val"]
    ddp = json.loads((tmp_path / "runs" / "demo" / "ddp" / "metrics.json").read_text())["val"]
    for key in ("dice", "iou", "accuracy", "dice_per_image", "iou_per_image"):
        assert abs(single[key] - ddp[key]) < 1e-6, (key, single[key], ddp[key])

"""Launch the CLI as a real 2-node torchrun job on localhost (two torchrun agents, one process per node)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DEMO = str(REPO / "experiments" / "demo.yaml")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(node_rank: int, port: int, nnodes: int = 2, *options: str) -> list[str]:
    """The documented launch of one node (docs/training.md, "Several nodes with torchrun")."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", "1",
            "--node-rank", str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port), *options,
            "-m", "lesion_lightning"]


def tiny_args(tmp_path: Path, root: Path, stage: str, *extra: str, configs: tuple[str, ...] = (DEMO,)) -> list[str]:
    """A tiny run of `configs` on the 30-image sample: kfold 5 = 24 training and 6 validation images (an even
    count, so DDP pads nothing), 32x32, batch 2 per process, two epochs, no augmentation."""
    return [stage, *(f"--config={c}" for c in configs), f"--data.root={root}", "--data.dataset=ham10000",
            "--data.image_size=32", "--data.batch_size=2", "--data.split=kfold", "--data.folds=5", "--data.fold=0",
            "--data.augment=none", "--data.num_workers=0", f"--output_root={tmp_path / 'runs'}", "--logger=none",
            "--trainer.enable_progress_bar=false", "--trainer.max_epochs=2", "--trainer.accelerator=cpu", *extra]


def demo_args(tmp_path: Path, root: Path, stage: str, *extra: str) -> list[str]:
    """The demo preset with a 4-channel U-Net (30 K parameters) at lr 0.02: after two epochs it predicts
    lesion and background, not one class everywhere, so metric comparisons mean something."""
    return tiny_args(tmp_path, root, stage, "--model.init_args.model_kwargs={base_width: 4}", "--model.init_args.lr=0.02",
                     *extra)


MULTI_NODE = ("--trainer.num_nodes=2", "--trainer.devices=1", "--trainer.accelerator=cpu")


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test environment, with the write audit (tests/write_audit) recording writes under tmp_path/runs."""
    out = dict(os.environ)
    audit = tmp_path / "audit"
    audit.mkdir(exist_ok=True)
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS / "write_audit"), str(TESTS), str(REPO),
                                         out.get("PYTHONPATH", "")])
    out.update({"WRITE_AUDIT_DIR": str(audit), "WRITE_AUDIT_ROOT": str(tmp_path / "runs"), **extra})
    return out


def run_nodes(tmp_path: Path, args: list[str], timeout: float = 300, **extra_env: str) -> list[subprocess.CompletedProcess]:
    """Start node 0 and node 1 at once, wait for both (killing both past `timeout`), return their results."""
    port = free_port()
    procs = [subprocess.Popen([*torchrun(n, port), *args], env=env(tmp_path, **extra_env), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
             for n in (0, 1)]
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                os.killpg(p.pid, 9)
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    return results


def writes_by_rank(tmp_path: Path) -> dict[str, set[str]]:
    """{rank: files it opened for writing or renamed into place under runs/} from the write audit."""
    out: dict[str, set[str]] = defaultdict(set)
    for log in (tmp_path / "audit").glob("*.txt"):
        rank = log.name.split("-")[0]
        out[rank] |= {line for line in log.read_text().splitlines() if line}
    return dict(out)


def val_metrics(run: Path, section: str = "val") -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())[section]

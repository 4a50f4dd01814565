"""A throwaway one-node SLURM cluster (munged + slurmctld + slurmd) in a temporary folder, for tests.

Debian's `slurm-wlm` and `munge` packages provide the daemons (`apt-get install slurm-wlm munge`). Every
file — munge key and socket, slurm.conf, state, spool, logs, pid files — lives under the folder given;
the daemons run in the foreground as children of the test and are stopped by `stop()`. Client commands
find the cluster through `env()` (SLURM_CONF).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def missing_programs() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(root: Path, node: str, cpus: int) -> str:
    return "\n".join([
        "ClusterName=lesiontest", f"SlurmctldHost={node}", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", f"AuthInfo=socket={root / 'munge.socket'}",
        "CredType=cred/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "MpiDefault=none",
        "SwitchType=switch/none", "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2", "SchedulerType=sched/backfill", "InactiveLimit=0", "KillWait=5", "MinJobAge=300",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "SlurmctldDebug=info", "SlurmdDebug=info",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
    ]) + "\n"


class SlurmCluster:
    """munged, slurmctld and slurmd for one node with `cpus` task slots; `start()`, then `stop()`."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.cpus = cpus
        self.node = socket.gethostname()
        self.procs: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}

    def _daemon(self, *cmd: str) -> None:
        log = open(self.root / f"{Path(cmd[0]).name}.out", "wb")
        self.procs.append(subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def start(self, timeout: float = 60) -> None:
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.root / "slurm.conf").write_text(_slurm_conf(self.root, self.node, self.cpus))
        self._daemon(_program("munged"), "--foreground", "--force", f"--key-file={key}",
                     f"--socket={self.root / 'munge.socket'}", f"--pid-file={self.root / 'munged.pid'}",
                     f"--log-file={self.root / 'munged.log'}", f"--seed-file={self.root / 'munge' / 'seed'}")
        self._wait(lambda: (self.root / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._daemon(_program("slurmctld"), "-D", "-i", "-f", str(self.root / "slurm.conf"))
        self._daemon(_program("slurmd"), "-D", "-f", str(self.root / "slurm.conf"))
        self._wait(self._node_idle, timeout, "the node did not come up idle")

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env(), capture_output=True, text=True,
                             timeout=10)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = {p.name: p.read_text()[-1500:] for p in self.root.glob("*.log")}
                logs.update({p.name: p.read_text()[-1500:] for p in self.root.glob("*.out")})
                raise RuntimeError(f"{what} (exited: {dead}); logs: {logs}")
            time.sleep(0.5)

    def sbatch(self, *args: str, cwd: Path) -> int:
        out = subprocess.run(["sbatch", "--parsable", *args], env=self.env(), cwd=cwd, capture_output=True, text=True,
                             timeout=30, check=True)
        return int(out.stdout.strip().split(";")[0])

    def wait_idle_queue(self, timeout: float) -> None:
        """Until no job is pending or running (TimeoutError past `timeout`, jobs cancelled)."""
        deadline = time.time() + timeout
        while subprocess.run(["squeue", "-h"], env=self.env(), capture_output=True, text=True, timeout=10).stdout.strip():
            if time.time() > deadline:
                subprocess.run(["scancel", "--user=root"], env=self.env(), timeout=10)
                raise TimeoutError(f"SLURM jobs still queued after {timeout:.0f} s")
            time.sleep(1)

    def state(self, job_id: int) -> str:
        out = subprocess.run(["scontrol", "show", "job", str(job_id)], env=self.env(), capture_output=True, text=True,
                             timeout=10).stdout
        return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "UNKNOWN")

    def stop(self) -> None:
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

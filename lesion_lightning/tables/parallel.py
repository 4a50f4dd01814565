"""Many table jobs at once: a per-job lock in the results store, and `reproduce --jobs N` worker processes.

The results store is one run folder per job (`job.json` + `metrics.json`, see `runner`). A job is claimed
with an exclusive `flock` on `<run folder>/job.lock` for as long as it runs, so two processes — `--jobs N`
workers, two `reproduce` commands, SLURM array tasks sharing a file system with working locks — never run
the same job at once: the second one reports it as running elsewhere and moves on. The kernel drops the
lock when its process dies, so a killed job leaves no stale claim.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

LOCK_FILE = "job.lock"


class JobBusy(RuntimeError):
    """Another process holds the job's lock (it is running that job now)."""


@contextmanager
def claim(run_dir: str | Path) -> Iterator[None]:
    """Hold the job's lock for the block; JobBusy at once if another process holds it."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobBusy(f"{path} is being run by another process (it holds {path / LOCK_FILE})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _worker_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _run_in_worker(run_claimed: Callable[..., Any], job: Any, logger: str, table: dict[str, Any] | None,
                   threads: int) -> tuple[str, str | None]:
    """One job in this (fresh) worker process: ("done", None), ("busy", why) or ("failed", error).
    `run_claimed` is `runner.run_claimed`, passed in (by reference) so this module does not import the runner."""
    import torch

    torch.set_num_threads(threads)  # N workers share the cores instead of each taking all of them
    try:
        run_claimed(job, logger=logger, table=table)
    except JobBusy as err:
        return "busy", str(err)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - reported to the parent, which goes on
        return "failed", f"{type(err).__name__}: {err}"
    return "done", None


def run_parallel(jobs: list[Any], workers: int, logger: str, table: dict[str, Any] | None,
                 on_finish: Callable[[Any, str, str | None], None], blocked: Callable[[Any], str | None],
                 run_claimed: Callable[..., Any]) -> None:
    """Run `jobs` (all unfinished) in `workers` processes, each job in a fresh one (spawned, so no state of
    one job reaches the next). A job waits until the training jobs it scores are done (`job.needs`);
    `blocked(job)` names one of them that finished without success. `on_finish(job, status, error)` in this process
    (status: start, done, busy, failed)."""
    pending = list(jobs)
    running: dict[Future, Any] = {}
    context = multiprocessing.get_context("spawn")
    finished: set[str] = set()
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        while pending or running:
            for job in [j for j in pending if _ready(j, pending, running, finished)]:
                if len(running) >= workers:
                    break
                pending.remove(job)
                if blocked(job):
                    on_finish(job, "failed", f"its training job {blocked(job)} did not finish")
                    continue
                on_finish(job, "start", None)
                running[pool.submit(_run_in_worker, run_claimed, job, logger, table,
                                    _worker_threads(workers))] = job
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                status, error = future.result()
                finished.add(job.run_dir)
                on_finish(job, status, error)


def _ready(job: Any, pending: list[Any], running: dict[Future, Any], finished: set[str]) -> bool:
    """A job may start once none of the training jobs it needs is pending or running."""
    waiting = ({j.run_dir for j in pending} | {j.run_dir for j in running.values()}) - finished
    return not set(job.needs) & waiting

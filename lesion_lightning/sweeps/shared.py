"""Several `sweep local` agents on one sweep: the output folder is the state they share, as W&B's server is.

An agent proposes and claims its next trial while it holds an exclusive `flock` on OUTPUT/sweep.lock: it
reads sweep.json (every agent's trials, running ones included), asks the engine with all of them (a grid
never hands out a point another agent holds; bayes treats running trials as W&B does), records its trial
as `running` under the next free number and writes sweep.json, then releases the lock and runs the trial
in its own trials/trial-NNN and run folder. The result goes back into sweep.json under the lock. The
folder must be on a file system whose `flock` works across the machines (local disks, NFSv4, Lustre with
flock enabled). A trial whose agent was killed stays `running` in sweep.json and is not proposed again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "sweep.lock"


@contextmanager
def locked(output: Path, timeout: float = 300) -> Iterator[None]:
    """Hold the sweep's lock for the block (waiting up to `timeout` s for another agent to release it)."""
    output.mkdir(parents=True, exist_ok=True)
    fd = os.open(output / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"error: {output / LOCK_FILE}: another sweep agent has held it for over "
                                     f"{timeout:.0f} s; is its file system's flock working?") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)

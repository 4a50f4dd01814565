"""Records every file a Python process opens for writing or renames into place under $WRITE_AUDIT_ROOT.

Active only when WRITE_AUDIT_DIR is set (tests/test_distributed.py puts this folder on PYTHONPATH): each
process appends `path` lines to WRITE_AUDIT_DIR/<rank>-<pid>.txt, so a test can tell which rank wrote what.
"""

import os
import sys

_LOG_DIR = os.environ.get("WRITE_AUDIT_DIR")
_ROOT = os.path.realpath(os.environ.get("WRITE_AUDIT_ROOT", "/nonexistent"))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _start() -> None:
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "launcher"))
    fd = os.open(os.path.join(_LOG_DIR, f"{rank}-{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    busy = [False]

    def record(path: object) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)) or busy[0]:
            return
        busy[0] = True
        try:
            real = os.path.realpath(os.fsdecode(path))
            if real.startswith(_ROOT + os.sep):
                os.write(fd, (real + "\n").encode())
        finally:
            busy[0] = False

    def hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
            if writing:
                record(path)
        elif event == "os.rename" and len(args) >= 2:
            record(args[1])

    sys.addaudithook(hook)


if _LOG_DIR:
    _start()

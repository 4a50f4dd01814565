"""Commands that do not train start without Lightning (issue 14): each runs in a fresh interpreter and
reports which heavy packages it imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lesion_lightning.paths import REPO_ROOT

PROBE = """
import json, sys
from lesion_lightning.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(m for m in ("pytorch_lightning", "lightning", "wandb", "torch")
                                                 if m in sys.modules)}))
"""


def _imports(*argv: str, tmp_path) -> tuple[int, set[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={"PATH": "/usr/bin:/bin", "LESION_LIGHTNING_CACHE": str(tmp_path / "cache"),
                               "PYTHONPATH": str(REPO_ROOT), "WANDB_MODE": "offline"}, timeout=300)
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    return last["code"], set(last["modules"])


@pytest.mark.parametrize("command", ["check-data", "split", "evaluate", "models"])
def test_commands_that_do_not_train_import_no_lightning(command, ham10000_root, tmp_path):
    masks = str(ham10000_root / "HAM10000_segmentations_lesion_tschandl")
    argv = {"check-data": ["check-data", "--dataset", "ham10000", "--root", str(ham10000_root)],
            "split": ["split", "--dataset", "ham10000", "--root", str(ham10000_root), "--scheme", "80-10-10",
                      "--out", str(tmp_path / "split.json")],
            "evaluate": ["evaluate", "--pred", masks, "--gt", masks],
            "models": ["models", "--names", "lanet", "--json"]}[command]
    code, modules = _imports(*argv, tmp_path=tmp_path)
    assert code == 0
    assert not {"pytorch_lightning", "lightning"} & modules, modules
    if command != "models":  # `models` builds timm layers, and timm imports W&B when it is installed
        assert "wandb" not in modules, modules
    if command in ("check-data", "split"):
        assert "torch" not in modules, modules

"""What a run tells the user is true and complete: metrics of the selected checkpoint, results next to
the run they test, each stage's config kept, refused resumes with other options, one-line errors,
checked output folders, whole checkpoint files, W&B mode and grouping, real FLOPs in the summary."""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch import nn
from test_callbacks import FakeDataModule

from lesion_lightning.cli import main
from lesion_lightning.training.checkpoint_io import AtomicCheckpointIO
from lesion_lightning.training.loggers import wandb_mode
from lesion_lightning.training.run_folder import RunFolderCallback, changed_options
from lesion_lightning.training.task import EpochResult, LesionSegmentationModule

REPO = Path(__file__).resolve().parent.parent
DEMO = str(REPO / "experiments" / "demo.yaml")


def _args(stage: str, tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return [stage, "--config", DEMO, f"--data.root={root}", "--data.image_size=32", "--data.batch_size=4",
            f"--data.cache={tmp_path / 'cache'}", f"--output_root={tmp_path / 'runs'}",
            "--trainer.enable_progress_bar=false", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
            "--model.model_kwargs={base_width: 4}", *extra]


# -- metrics.json: the selected checkpoint's metrics --------------------------------------------------
class ScriptedDice(LesionSegmentationModule):
    """Trains a 1x1 conv; its val/dice per epoch is scripted, so which epoch is best is known."""

    def __init__(self, dice: list[float]) -> None:
        super().__init__()
        self.model = nn.Conv2d(3, 1, 1)
        self._init_evaluation("bce", 0.5, False)
        self.scripted = dice

    def on_validation_epoch_end(self) -> None:
        self.metrics["val_metrics"].reset()
        dice = self.scripted[self.current_epoch]
        self.log("val/dice", dice)
        self.epoch_results["val"] = EpochResult("val", {"dice": dice})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_metrics_json_records_the_selected_checkpoint_and_the_last_epoch(tmp_path):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/dice", mode="max",
                                              filename="best-{epoch:03d}", auto_insert_metric_name=False)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                         callbacks=[RunFolderCallback(), checkpoint])
    trainer.fit(ScriptedDice([0.5, 0.7, 0.6]), datamodule=FakeDataModule())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert Path(checkpoint.best_model_path).name == "best-001.ckpt"
    assert (metrics["val"]["dice"], metrics["val"]["epoch"]) == (0.7, 1)  # the checkpoint selection picked
    assert (metrics["val_last_epoch"]["dice"], metrics["val_last_epoch"]["epoch"]) == (0.6, 2)

    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path / "b"),
                         enable_checkpointing=False, callbacks=[RunFolderCallback()])
    trainer.fit(ScriptedDice([0.5, 0.4]), datamodule=FakeDataModule())
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["val"]["epoch"] == 1 and "val_last_epoch" not in metrics  # no selection: the last epoch


# -- fit then test through the CLI ----------------------------------------------------------------------
def test_fit_then_test_keep_configs_record_sources_and_say_where(tmp_path, ham10000_root, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: offline
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(_args("fit", tmp_path, ham10000_root, "--trainer.max_epochs=1", "--run_name=r", "--amp=true")) == 0
    noise = [str(w.message) for w in caught if "LightningCLI's args" in str(w.message) or "LeafSpec" in str(w.message)]
    assert not noise
    out = capsys.readouterr()
    run = tmp_path / "runs" / "demo" / "r"
    assert f"fit: results in {run.resolve()}" in out.out and "  checkpoints/last.ckpt" in out.out
    assert "W&B: offline (no W&B credentials found" in out.out
    assert "litlogger" not in out.out + out.err
    assert "anonymous setting" not in out.err  # W&B's notice about an option Lightning always passes
    fit_config = (run / "config.yaml").read_text()
    assert yaml.safe_load(fit_config)["trainer"]["precision"] == "bf16-mixed"  # what --amp used on CPU
    # `data.root` given: the full dataset's folder as far as the run knows
    assert json.loads((run / "split.json").read_text())["data_source"]["kind"] == "dataset"

    best = next((run / "checkpoints").glob("best-*.ckpt"))
    assert main(_args("test", tmp_path, ham10000_root, f"--ckpt_path={best}", "--logger=wandb")) == 0
    assert [p.name for p in (tmp_path / "runs" / "demo").iterdir()] == ["r"]  # next to the run, no new folder
    assert (run / "config.yaml").read_text() == fit_config  # not overwritten by the test stage
    assert yaml.safe_load((run / "config_test.yaml").read_text())["ckpt_path"] == str(best)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["checkpoint"] == f"checkpoints/{best.name}" and "val" in metrics
    assert metrics["data_source"] == {"kind": "dataset", "dataset": "ham10000", "root": str(ham10000_root)}
    out = capsys.readouterr()
    assert f"test: results in {run.resolve()}" in out.out
    assert "W&B: offline (no W&B credentials found" in out.out  # the same reason as for fit, not its leftovers

    from lesion_lightning.utils.wandb_offline import find_offline_runs, read_run

    runs = [read_run(p) for p in find_offline_runs(run)]
    assert len(runs) == 2 and runs[0].run_id != runs[1].run_id
    assert {r.project for r in runs} == {"lesion-lightning"}
    assert (run / "wandb_run_id").read_text().strip() in {r.run_id for r in runs}  # fit's id, kept for resumes


def test_default_data_is_said_loudly_and_recorded(tmp_path, ham10000_root, capsys):
    assert main(_args("fit", tmp_path, ham10000_root, "--data.root=null", "--trainer.max_epochs=1",
                      "--run_name=s", "--logger=none")) == 0
    assert "NOTE: data.root is null: this run uses the small embedded real sample" in capsys.readouterr().err
    run = tmp_path / "runs" / "demo" / "s"
    assert json.loads((run / "metrics.json").read_text())["data_source"]["kind"] == "real sample"
    assert json.loads((run / "split.json").read_text())["data_source"]["kind"] == "real sample"


# -- resume with other options --------------------------------------------------------------------------
def test_resume_with_changed_data_or_model_options_is_refused_unless_forced(tmp_path, ham10000_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    base = ("--trainer.max_epochs=1", "--run_name=r", "--logger=none")
    assert main(_args("fit", tmp_path, ham10000_root, *base[:2], "--logger=wandb")) == 0
    with pytest.raises(SystemExit) as excinfo:
        main(_args("fit", tmp_path, ham10000_root, *base, "--ckpt_path=last", "--data.image_size=48",
                   "--trainer.max_epochs=2"))
    assert "--data.image_size (32 -> 48)" in str(excinfo.value.code)
    assert "--force_resume" in str(excinfo.value.code)
    assert yaml.safe_load((tmp_path / "runs/demo/r/config.yaml").read_text())["data"]["image_size"] == 32
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(_args("fit", tmp_path, ham10000_root, *base[:2], "--logger=wandb", "--ckpt_path=last",
                          "--trainer.max_epochs=2")) == 0
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # resuming writes there
    from lesion_lightning.utils.wandb_offline import find_offline_runs, read_run

    ids = {read_run(p).run_id for p in find_offline_runs(tmp_path / "runs" / "demo" / "r")}
    assert len(find_offline_runs(tmp_path / "runs" / "demo" / "r")) == 2 and len(ids) == 1  # the same W&B run
    assert main(_args("fit", tmp_path, ham10000_root, *base, "--ckpt_path=last", "--data.image_size=48",
                      "--trainer.max_epochs=3", "--force_resume=true")) == 0


def test_changed_options_names_model_and_data_keys_only():
    saved = {"data": {"image_size": 256, "num_workers": 2}, "model": {"init_args": {"lr": 0.1}}, "trainer": {"x": 1}}
    current = {"data": {"image_size": 64, "num_workers": 0}, "model": {"init_args": {"lr": 0.2}}, "trainer": {"x": 2}}
    assert changed_options(saved, current) == ["--data.image_size (256 -> 64)", "--model.init_args.lr (0.1 -> 0.2)"]


# -- errors ------------------------------------------------------------------------------------------------
def test_run_errors_are_one_line_without_traceback_unless_debug(tmp_path, capsys):
    args = ["fit", "--config", DEMO, f"--data.root={tmp_path / 'missing'}", f"--output_root={tmp_path / 'runs'}",
            "--logger=none", "--trainer.enable_progress_bar=false"]
    assert main(args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(tmp_path / "missing") in lines[0] and "Traceback" not in err
    with pytest.raises(Exception, match="dataset root not found"):
        main([*args, "--debug"])
    with pytest.raises(SystemExit, match="--ckpt_path .*nope.ckpt: no such checkpoint file"):
        main(["test", "--config", DEMO, f"--ckpt_path={tmp_path / 'nope.ckpt'}", f"--output_root={tmp_path}"])


def test_output_folder_is_checked_before_training(tmp_path, ham10000_root, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="cannot write the run folder"):
        main(_args("fit", tmp_path, ham10000_root, f"--output_root={blocker}", "--logger=none"))
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(SystemExit, match="1 MB free, but the checkpoints need about"):
        main(_args("fit", tmp_path, ham10000_root, "--logger=none"))
    assert not list((tmp_path / "runs").glob("*/*/checkpoints"))


# -- checkpoint files ------------------------------------------------------------------------------------
def test_a_failed_checkpoint_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import builtins

    target = tmp_path / "best-001.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(3)}, target)
    real_open = builtins.open

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def full_disk_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return FullDisk(fh) if "w" in mode and Path(path).parent == tmp_path else fh

    monkeypatch.setattr(builtins, "open", full_disk_open)
    for name in ("best-001.ckpt", "best-002.ckpt"):
        with pytest.raises(OSError, match="No space left"):
            io.save_checkpoint({"w": torch.zeros(1000)}, tmp_path / name)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-001.ckpt"]  # no truncated file, no temp file
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))  # the old one intact


def test_the_cli_trainer_writes_checkpoints_atomically_and_counts_flops(tmp_path, ham10000_root):
    from pytorch_lightning.utilities.model_summary import ModelSummary

    from lesion_lightning.training.cli import build_cli

    cli = build_cli(_args("fit", tmp_path, ham10000_root, "--data.image_size=48", "--trainer.max_epochs=1",
                          "--logger=none"))
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert tuple(cli.model.example_input_array.shape) == (1, 3, 48, 48)  # the data's size, not the paper's
    assert ModelSummary(cli.model).total_flops > 0  # what Lightning's summary prints as "Total FLOPs"


# -- W&B mode ----------------------------------------------------------------------------------------------
def test_wandb_is_online_with_credentials_and_offline_without(tmp_path):
    no_netrc = str(tmp_path / "none")
    assert wandb_mode({}, no_netrc)[0] == "offline"
    assert wandb_mode({"WANDB_API_KEY": "k"}, no_netrc)[0] == "online"
    assert wandb_mode({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, no_netrc)[0] == "disabled"
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert wandb_mode({}, str(netrc)) == ("online", "credentials from `wandb login` found")


# -- an unwritable or full output folder is refused before training ------------------------------------
def test_unwritable_or_full_output_root_is_refused_before_training(tmp_path, ham10000_root, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output root should be")
    with pytest.raises(SystemExit) as excinfo:
        main(_args("fit", tmp_path, ham10000_root, "--trainer.max_epochs=1", "--run_name=r", "--logger=none",
                   f"--output_root={blocker}"))
    message = str(excinfo.value.code)
    assert message.startswith("error: cannot write the run folder") and str(blocker) in message
    assert "--output_root" in message

    import shutil

    from lesion_lightning.training import run_folder

    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 1 << 20))
    with pytest.raises(SystemExit) as excinfo:
        main(_args("fit", tmp_path, ham10000_root, "--trainer.max_epochs=1", "--run_name=full", "--logger=none"))
    assert "1 MB free" in str(excinfo.value.code) and "--output_root" in str(excinfo.value.code)
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # nothing trained

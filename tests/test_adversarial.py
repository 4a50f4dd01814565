"""AdversarialSegmentationTask (SLSNet Sec. 3.4): the manual-optimisation GAN loop on the real HAM10000 sample.

Kept small: narrow G and D (the paper's layout, fewer channels), 32x32 images, batch 2, a few steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from lesion_lightning.data.datamodule import LesionDataModule
from lesion_lightning.layers import CAM, PAM
from lesion_lightning.training.adversarial import GENERATOR_LOSSES, AdversarialSegmentationTask

from model_checks import one_thread_per_test  # noqa: F401 (autouse fixture)

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "experiments" / "slsnet" / "isic2018.yaml"
SMOKE = REPO / "experiments" / "slsnet" / "smoke.yaml"
TINY_G = {"widths": [8, 8, 8, 16]}
TINY_D = {"base_width": 8}


def _task(**kwargs) -> AdversarialSegmentationTask:
    kwargs.setdefault("model_kwargs", dict(TINY_G))
    kwargs.setdefault("discriminator_kwargs", dict(TINY_D))
    return AdversarialSegmentationTask(**kwargs)


def _data(root: Path, tmp_path: Path, batch_size: int = 2) -> LesionDataModule:
    return LesionDataModule(dataset="ham10000", root=str(root), split="80-20", image_size=32, batch_size=batch_size,
                            augment="slsnet", cache=str(tmp_path / "cache"))


def _trainer(tmp_path: Path, batches: int, **kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=batches, limit_val_batches=1,
        num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> list[str]:
    after = module.state_dict()
    return [k for k, v in before.items() if not torch.equal(v, after[k])]


def test_steps_on_real_sample_update_both_nets_and_log_both_losses(tmp_path, ham10000_root) -> None:
    torch.manual_seed(0)
    task = _task()
    assert task.automatic_optimization is False
    g0, d0 = _snapshot(task.model), _snapshot(task.discriminator)
    trainer = _trainer(tmp_path, batches=3)
    trainer.fit(task, datamodule=_data(ham10000_root, tmp_path))
    # 3 batches x (one D step + one G step): Lightning counts every optimizer step
    assert trainer.global_step == 6
    g_changed, d_changed = _changed(g0, task.model), _changed(d0, task.discriminator)
    assert any("weight" in k for k in g_changed) and any("weight" in k for k in d_changed)
    # every conv of each net got a step
    assert {k for k in g0 if k.endswith("head.weight")} <= set(g_changed)
    assert {k for k in d0 if k.endswith("head.weight")} <= set(d_changed)
    m = trainer.callback_metrics
    for key in ("train/loss_d", "train/loss_g", "train/loss_g_adv", "train/loss_g_l1", "train/loss_g_jaccard",
                "train/d_real", "train/d_fake", "val/dice", "val/loss"):
        assert key in m and torch.isfinite(m[key]), key
    assert 0 < float(m["train/d_real"]) < 1 and 0 < float(m["train/d_fake"]) < 1
    # eq. 7 with lambda 0.1, alpha 0.5 (one epoch-mean of each term over the same steps)
    expected = m["train/loss_g_adv"] + 0.1 * m["train/loss_g_l1"] + 0.5 * m["train/loss_g_jaccard"]
    torch.testing.assert_close(m["train/loss_g_epoch"] if "train/loss_g_epoch" in m else m["train/loss_g"], expected)
    # validation used G alone with the standard metrics, which the run-folder callback reads
    assert set(task.epoch_results) >= {"train", "val"}
    assert 0.0 <= task.epoch_results["val"].metrics["dice"] <= 1.0


class _GradNormProbe(Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))


def test_gradient_clipping_is_a_task_option_applied_to_both_nets(tmp_path, ham10000_root) -> None:
    torch.manual_seed(0)
    probe = _GradNormProbe()
    trainer = _trainer(tmp_path, batches=2, callbacks=[probe], limit_val_batches=0)
    trainer.fit(_task(gradient_clip_val=1e-3), datamodule=_data(ham10000_root, tmp_path))
    assert len(probe.norms) == 4 and max(probe.norms) <= 1e-3 * 1.001, probe.norms
    # without clipping the same steps have far larger gradients
    torch.manual_seed(0)
    free = _GradNormProbe()
    _trainer(tmp_path, batches=2, callbacks=[free], limit_val_batches=0).fit(
        _task(), datamodule=_data(ham10000_root, tmp_path))
    assert max(free.norms) > 10 * 1e-3


def test_bf16_mixed_precision_steps(tmp_path, ham10000_root) -> None:
    torch.manual_seed(0)
    task = _task()
    g0, d0 = _snapshot(task.model), _snapshot(task.discriminator)
    trainer = _trainer(tmp_path, batches=2, precision="bf16-mixed", limit_val_batches=0)
    trainer.fit(task, datamodule=_data(ham10000_root, tmp_path))
    assert _changed(g0, task.model) and _changed(d0, task.discriminator)
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert torch.isfinite(trainer.callback_metrics["train/loss_g"])


class _OptimizerStateProbe(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.states = [{k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()}
                        for k, v in opt.state_dict()["state"].items()} for opt in trainer.optimizers]
        self.global_step = trainer.global_step


def test_resume_restores_both_optimizers(tmp_path, ham10000_root) -> None:
    torch.manual_seed(0)
    ckpt_dir = tmp_path / "ckpt"
    trainer = _trainer(tmp_path, batches=2, limit_val_batches=0, enable_checkpointing=True,
                       callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True)])
    trainer.fit(_task(lr_d=1e-4), datamodule=_data(ham10000_root, tmp_path))
    ckpt_path = ckpt_dir / "last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    saved = ckpt["optimizer_states"]
    assert len(saved) == 2 and all(s["state"] for s in saved)  # Adam moments of G and of D
    assert saved[0]["param_groups"][0]["lr"] == 2e-4 and saved[1]["param_groups"][0]["lr"] == 1e-4
    assert saved[0]["param_groups"][0]["betas"] == (0.5, 0.999)

    # the checkpoint's hyperparameters rebuild the task (this class's own arguments only)
    restored = AdversarialSegmentationTask.load_from_checkpoint(ckpt_path, map_location="cpu")
    assert restored.hparams.lr_d == 1e-4 and restored.hparams.model_kwargs["widths"] == TINY_G["widths"]

    probe = _OptimizerStateProbe()
    resumed = _trainer(tmp_path, batches=2, max_epochs=2, limit_val_batches=0, callbacks=[probe])
    resumed.fit(_task(lr_d=1e-4), datamodule=_data(ham10000_root, tmp_path), ckpt_path=str(ckpt_path))
    assert probe.global_step == 4
    assert len(probe.states) == 2
    for restored_state, saved_state in zip(probe.states, saved):
        assert restored_state.keys() == saved_state["state"].keys()
        for key, values in saved_state["state"].items():
            for name in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(restored_state[key][name], values[name])
    assert resumed.global_step == 8  # and training went on from there


def test_ablation_flags_reach_both_nets() -> None:
    task = _task(model_kwargs={**TINY_G, "use_pam": False, "use_cam": True, "multiscale": False})
    assert not any(isinstance(m, PAM) for m in task.modules())
    assert any(isinstance(m, CAM) for m in task.discriminator.modules())
    assert len(task.model.stem.branches) == 1
    task = _task(model_kwargs={**TINY_G, "use_cam": False}, discriminator_kwargs={**TINY_D, "use_cam": True})
    assert not any(isinstance(m, CAM) for m in task.model.modules())
    assert any(isinstance(m, CAM) for m in task.discriminator.modules())
    assert any(isinstance(m, PAM) for m in task.discriminator.modules())


@pytest.mark.parametrize("variant", sorted(GENERATOR_LOSSES))
def test_table8_loss_variants(variant: str) -> None:
    torch.manual_seed(0)
    task = _task(generator_loss=variant)
    logged: dict[str, torch.Tensor] = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)  # type: ignore[method-assign]
    task.optimizers = lambda: [_NoStep(), _NoStep()]  # type: ignore[method-assign]
    task.toggle_optimizer = task.untoggle_optimizer = lambda opt: None  # type: ignore[method-assign]
    task.manual_backward = lambda loss: loss.backward()  # type: ignore[method-assign]
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": (torch.rand(2, 1, 32, 32) > 0.5).float()}
    task.training_step(batch, 0)
    expected = logged["train/loss_g_adv"].clone()
    if "l1" in GENERATOR_LOSSES[variant]:
        expected += 0.1 * logged["train/loss_g_l1"]
    if "jaccard" in GENERATOR_LOSSES[variant]:
        expected += 0.5 * logged["train/loss_g_jaccard"]
    torch.testing.assert_close(logged["train/loss_g"], expected)
    # eq. 11: the D loss is the sum of its real and fake BCE terms
    torch.testing.assert_close(logged["train/loss_d"], logged["train/loss_d_real"] + logged["train/loss_d_fake"])


class _NoStep:
    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        pass


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"generator_loss": "bce_dice"}, "generator_loss"),
        ({"gradient_clip_val": -1.0}, "gradient_clip_val"),
        ({"gradient_clip_algorithm": "max"}, "gradient_clip_algorithm"),
        ({"l1_weight": -0.1}, "l1_weight"),
        ({"lr_d": 0.0}, "lr_d"),
        ({"betas": (0.5, 1.5)}, "betas"),
        ({"discriminator_kwargs": {"widht": 8}}, "discriminator_kwargs"),
    ],
)
def test_bad_options_name_themselves(kwargs, option) -> None:
    with pytest.raises(ValueError, match=option):
        _task(**kwargs)


def test_plain_ddp_is_refused_before_any_step_naming_the_option() -> None:
    task = _task()
    for strategy, refused in (("ddp", True), ("ddp_find_unused_parameters_true", False), ("auto", False)):
        task.trainer = pl.Trainer(accelerator="cpu", devices=1, strategy=strategy, logger=False,
                                  enable_progress_bar=False, enable_model_summary=False)
        if refused:
            with pytest.raises(ValueError, match="trainer.strategy.*ddp_find_unused_parameters_true"):
                task.setup("fit")
        else:
            task.setup("fit")
        task.setup("validate")  # evaluation runs G alone: any strategy


def test_fit_through_cli_with_the_paper_preset(tmp_path, ham10000_root, monkeypatch) -> None:
    from lesion_lightning.cli import main

    steps: list[tuple[float, float]] = []
    original = AdversarialSegmentationTask.training_step

    def recording_step(self, batch, batch_idx):
        out = original(self, batch, batch_idx)
        opt_g, opt_d = self.optimizers()
        steps.append((opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))
        return out

    monkeypatch.setattr(AdversarialSegmentationTask, "training_step", recording_step)
    main(["fit", "--config", str(PRESET), "--config", str(SMOKE), f"--data.root={ham10000_root}",
          "--data.image_size=32", "--data.batch_size=2", f"--data.cache={tmp_path / 'cache'}",
          f"--output_root={tmp_path / 'runs'}", "--run_name=fdr", "--trainer.fast_dev_run=true", "--logger=none",
          "--trainer.enable_progress_bar=false"])
    assert (tmp_path / "runs" / "slsnet_smoke" / "fdr" / "environment.json").exists()
    assert steps == [(2e-4, 2e-4)]  # one adversarial batch, both Adam optimizers at the paper's lr


@pytest.mark.slow
def test_two_process_ddp_fit(tmp_path, ham10000_root) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "lesion_lightning", "fit", "--config", str(PRESET), "--config", str(SMOKE),
           f"--data.root={ham10000_root}", "--data.image_size=32", "--data.batch_size=2",
           f"--data.cache={tmp_path / 'cache'}", f"--output_root={tmp_path / 'runs'}", "--logger=none",
           "--trainer.enable_progress_bar=false", "--run_name=ddp", "--trainer.accelerator=cpu",
           "--trainer.devices=2", "--trainer.strategy=ddp_find_unused_parameters_true",
           "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = torch.load(tmp_path / "runs" / "slsnet_smoke" / "ddp" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert len(ckpt["optimizer_states"]) == 2 and all(s["state"] for s in ckpt["optimizer_states"])
    assert ckpt["global_step"] == 4  # 2 batches per rank x (D step + G step)

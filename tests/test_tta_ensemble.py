"""Test-time augmentation (6-fold, probability averaging) and the performance-weighted ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lesion_lightning.models.ensemble import WeightedEnsemble, weights_from_scores
from lesion_lightning.models.tta import TTA_TRANSFORMS, TTAWrapper


def _pointwise(out_channels: int, seed: int) -> nn.Module:
    # A 1x1 conv treats every pixel alike, so it commutes with flips and 90-degree rotations.
    torch.manual_seed(seed)
    return nn.Conv2d(3, out_channels, 1).eval()


class _Oriented(nn.Module):
    """Not flip/rotation symmetric: a 3x3 conv plus a left-to-right ramp over the width it is given."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-2, 2, x.shape[-1], device=x.device).expand(x.shape[-2], -1)
        return self.conv(x) + ramp


def test_default_views_are_the_six_fold_set() -> None:
    assert TTA_TRANSFORMS == ("identity", "hflip", "vflip", "hvflip", "rot90", "rot270")


@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_tta_of_symmetric_model_equals_plain_prediction(size: tuple[int, int]) -> None:
    model = _pointwise(1, seed=0)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        plain, tta = model(x), TTAWrapper(model)(x)
    assert tta.shape == plain.shape
    # Every view is mapped back correctly (a wrong inverse would misplace pixels of this non-square input).
    assert torch.allclose(tta, plain, atol=1e-4)


def test_tta_of_symmetric_softmax_head_equals_plain_probabilities() -> None:
    model = _pointwise(2, seed=3)
    x = torch.randn(1, 3, 20, 28)
    with torch.no_grad():
        plain, tta = model(x), TTAWrapper(model)(x)
    assert tta.shape == (1, 2, 20, 28)
    assert torch.allclose(torch.softmax(tta, 1), torch.softmax(plain, 1), atol=1e-5)


def test_tta_of_oriented_model_averages_probabilities_of_mapped_back_views() -> None:
    model = _Oriented().eval()
    x = torch.randn(1, 3, 12, 20)  # non-square: rot90 views are predicted at 20 x 12
    with torch.no_grad():
        tta = TTAWrapper(model)(x)
        plain = model(x)
        # Written out view by view, independent of the wrapper's transform table.
        views = [
            torch.sigmoid(model(x)),
            torch.sigmoid(model(x.flip(3))).flip(3),
            torch.sigmoid(model(x.flip(2))).flip(2),
            torch.sigmoid(model(x.flip(2).flip(3))).flip(3).flip(2),
            torch.rot90(torch.sigmoid(model(torch.rot90(x, 1, (2, 3)))), 3, (2, 3)),
            torch.rot90(torch.sigmoid(model(torch.rot90(x, 3, (2, 3)))), 1, (2, 3)),
        ]
        expected = torch.stack(views).mean(0)
    assert tta.shape == plain.shape == (1, 1, 12, 20)
    assert torch.isfinite(tta).all()
    assert not torch.allclose(tta, plain, atol=1e-3)
    assert torch.allclose(torch.sigmoid(tta), expected, atol=1e-5)


def test_tta_subset_and_bad_names() -> None:
    model = _Oriented().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        only_identity = TTAWrapper(model, transforms=("identity",))(x)
        assert torch.allclose(only_identity, model(x), atol=1e-4)
    with pytest.raises(ValueError, match="'rot180'"):
        TTAWrapper(model, transforms=("identity", "rot180"))
    with pytest.raises(ValueError, match="at least one"):
        TTAWrapper(model, transforms=())
    with pytest.raises(ValueError, match="activation"):
        TTAWrapper(model, activation="tanh")  # type: ignore[arg-type]


def test_tta_logits_stay_finite_for_saturated_models() -> None:
    model = nn.Conv2d(3, 1, 1)
    nn.init.constant_(model.weight, 1e4)
    with torch.no_grad():
        out = TTAWrapper(model)(torch.randn(1, 3, 8, 8))
    assert torch.isfinite(out).all()


def test_weights_from_scores_normalise_validation_dice() -> None:
    w = weights_from_scores([0.90, 0.88, 0.86])
    assert sum(w) == pytest.approx(1.0)
    assert w[0] / w[2] == pytest.approx(0.90 / 0.86)
    for bad in ([], [0.0, 0.0], [0.9, -0.1], [float("nan")]):
        with pytest.raises(ValueError, match="ensemble weights"):
            weights_from_scores(bad)


@pytest.mark.parametrize("channels", [1, 2])
def test_ensemble_output_is_weighted_mean_of_member_probabilities(channels: int) -> None:
    members = [_pointwise(channels, seed=s) for s in (0, 1, 2)]
    ensemble = WeightedEnsemble(members, [0.91, 0.89, 0.80]).eval()
    assert ensemble.weights.sum().item() == pytest.approx(1.0)
    x = torch.randn(2, 3, 10, 14)
    with torch.no_grad():
        out = ensemble(x)
        act = (lambda t: torch.sigmoid(t)) if channels == 1 else (lambda t: torch.softmax(t, 1))
        expected = sum(w * act(m(x)) for w, m in zip(weights_from_scores([0.91, 0.89, 0.80]), members))
        assert out.shape == (2, channels, 10, 14)
        assert torch.allclose(act(out), expected, atol=1e-5)
        # Not the plain mean: the weights matter.
        assert not torch.allclose(act(out), sum(act(m(x)) for m in members) / 3, atol=1e-4)


def test_ensemble_weights_travel_with_state_dict_and_validate() -> None:
    members = [_pointwise(1, seed=s) for s in (0, 1)]
    ensemble = WeightedEnsemble(members, [1, 1])
    ensemble.set_weights([3.0, 1.0])
    assert ensemble.weights.tolist() == pytest.approx([0.75, 0.25])
    clone = WeightedEnsemble([_pointwise(1, seed=s) for s in (5, 6)], [1, 1])
    clone.load_state_dict(ensemble.state_dict())
    assert clone.weights.tolist() == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError, match="2 members but 3 weights"):
        WeightedEnsemble(members, [1, 1, 1])
    with pytest.raises(ValueError, match="at least one member"):
        WeightedEnsemble([], [])


def test_tta_wraps_an_ensemble() -> None:
    ensemble = WeightedEnsemble([_pointwise(1, seed=s) for s in (0, 1)], [0.6, 0.4]).eval()
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.allclose(TTAWrapper(ensemble)(x), ensemble(x), atol=1e-4)


# -- through the task and the CLI ------------------------------------------------------------------
DEMO = str(Path(__file__).resolve().parent.parent / "experiments" / "demo.yaml")


def _fit_args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", DEMO, f"--data.root={root}", "--data.image_size=64", "--data.batch_size=4",
            f"--data.cache={tmp_path / 'cache'}", f"--output_root={tmp_path / 'runs'}",
            "--trainer.enable_progress_bar=false", *extra]


def _pointwise_task(channels: int = 1, tta: bool = False):
    from lesion_lightning.training.task import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 4}, tta=tta)
    task.model = _pointwise(channels, seed=0)  # flip/rotation-symmetric network
    return task.eval()


def test_task_tta_of_symmetric_model_equals_plain_prediction() -> None:
    batch = {"image": torch.randn(2, 3, 16, 24), "id": ["a", "b"]}
    plain, tta = _pointwise_task(tta=False), _pointwise_task(tta=True)
    with torch.no_grad():
        p, t = plain.predict_step(batch, 0), tta.predict_step(batch, 0)
    assert torch.allclose(p["probs"], t["probs"], atol=1e-5)
    assert torch.equal(p["mask"], t["mask"])


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory, request):
    """One short demo run (simple U-Net, 64x64, 1 epoch) on the real HAM10000 sample."""
    from lesion_lightning.paths import sample_dataset_root

    root = sample_dataset_root("ham10000")
    if root is None:
        pytest.skip("real ham10000 sample not found (expected ../shared/data/ham10000 beside the checkout)")
    from lesion_lightning.cli import main

    tmp = tmp_path_factory.mktemp("tta_cli")
    main(_fit_args(tmp, root, "--trainer.max_epochs=1", "--logger=none", "--run_name=base"))
    ckpt = tmp / "runs" / "demo" / "base" / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    return tmp, root, ckpt


def test_cli_tta_flag_overrides_checkpoint_and_tests_the_tta_of_the_network(demo_checkpoint) -> None:
    import json

    from lesion_lightning.training.cli import build_cli

    tmp, root, ckpt = demo_checkpoint
    dice = {}
    for flag in ("false", "true"):
        args = _fit_args(tmp, root, f"--run_name=tta_{flag}", f"--ckpt_path={ckpt}", "--logger=none", f"--tta={flag}")
        cli = build_cli(["test", *args[1:]])
        # the checkpoint's hyperparameters say tta=False; the top-level flag wins
        assert cli.model.tta is (flag == "true")
        dice[flag] = json.loads((tmp / "runs" / "demo" / f"tta_{flag}" / "metrics.json").read_text())["test"]["dice"]
    # What the test loop measured with --tta=true is the TTA of the checkpoint's network, computed here by hand.
    from lesion_lightning.metrics import SegmentationMetrics

    metric = SegmentationMetrics()
    net = TTAWrapper(cli.model.model.eval())
    with torch.no_grad():
        for batch in cli.datamodule.test_dataloader():
            metric.update(torch.sigmoid(net(batch["image"])), batch["mask"])
    assert float(metric.compute()["dice"]) == pytest.approx(dice["true"], abs=1e-5)


def test_cli_tta_predict(demo_checkpoint) -> None:
    from lesion_lightning.training.cli import build_cli

    tmp, root, ckpt = demo_checkpoint
    args = _fit_args(tmp, root, "--run_name=tta_predict", f"--ckpt_path={ckpt}", "--logger=none", "--tta=true")
    cli = build_cli(["predict", *args[1:], "--return_predictions=true"])
    assert cli.model.tta is True
    outputs = cli.trainer.predict_loop.predictions
    assert outputs and all(o["probs"].shape[1] == 1 for o in outputs)

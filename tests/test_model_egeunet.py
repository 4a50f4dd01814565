"""EGE-UNet and its blocks (GHPA, group aggregation bridge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lesion_lightning.layers import GroupAggregationBridge, HadamardAxisAttention
from lesion_lightning.models import create_model, get_model_spec
from lesion_lightning.utils.complexity import count_flops, count_params

from model_checks import bce_dice, ham_batch, seeded_model, training_losses
from model_checks import one_thread  # noqa: F401 (autouse fixture: one intra-op thread per module)

OFFICIAL_PARAMS = 53_374  # sum(p.numel()) of the official EGE-UNet code (gt_ds=True)
OFFICIAL_FLOPS = 144_192_512  # FlopCounterMode on the official code at 1x3x256x256


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return seeded_model("egeunet")


def test_parameter_count_equals_official_code_and_table(model: nn.Module) -> None:
    assert count_params(model) == OFFICIAL_PARAMS
    assert round(count_params(model) / 1e6, 3) == get_model_spec("egeunet").paper["params"] / 1e6


def test_flops_match_official_code(model: nn.Module) -> None:
    assert count_flops(model, (3, 256, 256)) == pytest.approx(OFFICIAL_FLOPS, rel=0.01)


@pytest.mark.parametrize("size", [(128, 128), (224, 224), (256, 256), (192, 256), (90, 70)])
def test_output_shape_equals_input_shape(model: nn.Module, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_aux_outputs_are_full_size_and_main_output_unchanged(model: nn.Module) -> None:
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        main, aux = model(x, return_aux=True)
        plain = model(x)
    torch.testing.assert_close(main, plain)
    assert len(aux) == 5 and all(a.shape == (1, 1, 96, 64) for a in aux)
    assert not torch.allclose(aux[0], aux[4])


def test_hadamard_attention_maps_resize_to_any_input() -> None:
    block = HadamardAxisAttention(16, 24)
    assert block(torch.randn(2, 16, 12, 20)).shape == (2, 24, 12, 20)
    with pytest.raises(ValueError, match="divisible by 4"):
        HadamardAxisAttention(18, 24)


def test_group_aggregation_bridge_uses_the_mask() -> None:
    torch.manual_seed(0)
    gab = GroupAggregationBridge(16, 8)
    deep, skip = torch.randn(1, 16, 8, 8), torch.randn(1, 8, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    out = gab(deep, skip, mask)
    assert out.shape == skip.shape
    assert not torch.allclose(gab(deep, skip, mask + 3.0), out)


def test_training_steps_with_deep_supervision_reduce_loss(ham10000_root: Path) -> None:
    torch.manual_seed(0)
    x, y = ham_batch(ham10000_root, 4, 64)
    net = create_model("egeunet").train()

    def loss_fn() -> torch.Tensor:
        main, aux = net(x, return_aux=True)
        return bce_dice(main, y) + sum(w * bce_dice(a, y) for w, a in zip((0.1, 0.2, 0.3, 0.4, 0.5), aux))

    losses = training_losses(net, loss_fn)
    assert np.mean(losses[-3:]) < 0.8 * losses[0]


OFFICIAL_LOSS = {"name": "deep_supervision", "loss": {"name": "bce_dice", "per_image": True},
                 "aux_weights": [0.1, 0.2, 0.3, 0.4, 0.5]}


def test_task_trains_on_the_official_deep_supervision_loss() -> None:
    from lesion_lightning.training.task import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(model="egeunet", loss=OFFICIAL_LOSS)
    x, y = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    logits, loss = task._logits_and_loss(x, y, "train")
    main, aux = task.model(x, return_aux=True)
    expected = bce_dice(main, y, per_image=True) + sum(
        w * bce_dice(a, y, per_image=True) for w, a in zip((0.1, 0.2, 0.3, 0.4, 0.5), aux))
    torch.testing.assert_close(logits, main)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    task.tta = True  # TTA evaluates the main output only
    _, tta_loss = task._logits_and_loss(x, y, "val")
    assert float(tta_loss) < float(loss)


def test_deep_supervision_loss_refused_for_a_model_without_aux_outputs() -> None:
    from lesion_lightning.training.task import SegmentationTask

    with pytest.raises(ValueError, match="model 'simple_unet' does not give"):
        SegmentationTask(model="simple_unet", loss=OFFICIAL_LOSS)

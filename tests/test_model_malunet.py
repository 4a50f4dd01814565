"""MALUNet (SCSONet's ablation base) and its blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lesion_lightning.layers import DilatedGatedAttention, ExternalAttention
from lesion_lightning.models import create_model, get_model_spec
from lesion_lightning.utils.complexity import count_flops, count_params

from model_checks import bce_dice, ham_batch, seeded_model, training_losses
from model_checks import one_thread  # noqa: F401 (autouse fixture: one intra-op thread per module)

OFFICIAL_PARAMS = 177_943  # sum(p.numel()) of the official MALUNet code
OFFICIAL_FLOPS = 165_480_448  # FlopCounterMode on the official code at 1x3x256x256


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return seeded_model("malunet")


def test_paper_params_are_thop_count_without_groupnorm(model: nn.Module) -> None:
    groupnorm = sum(p.numel() for m in model.modules() if isinstance(m, nn.GroupNorm) for p in m.parameters())
    assert round((count_params(model) - groupnorm) / 1e6, 3) == get_model_spec("malunet").paper["params"] / 1e6


def test_flops_match_official_code(model: nn.Module) -> None:
    assert count_flops(model, (3, 256, 256)) == pytest.approx(OFFICIAL_FLOPS, rel=0.01)


@pytest.mark.parametrize("size", [(128, 128), (224, 224), (256, 256), (192, 256), (90, 70)])
def test_output_shape_equals_input_shape(model: nn.Module, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_external_attention_memories_start_transposed_but_train_separately() -> None:
    ea = ExternalAttention(16)
    assert torch.equal(ea.memory_key.weight, ea.memory_value.weight.transpose(0, 1))
    assert ea.memory_key.weight.data_ptr() != ea.memory_value.weight.data_ptr()
    x = torch.randn(2, 16, 8, 8)
    assert ea(x).shape == x.shape


def test_dilated_gated_attention_shapes_and_channel_check() -> None:
    assert DilatedGatedAttention(24, 32)(torch.randn(1, 24, 16, 16)).shape == (1, 32, 16, 16)
    with pytest.raises(ValueError, match="split into 4"):
        DilatedGatedAttention(18, 32)


def test_training_steps_on_real_samples_reduce_loss(ham10000_root: Path) -> None:
    torch.manual_seed(0)
    x, y = ham_batch(ham10000_root, 4, 64)
    net = create_model("malunet").train()
    losses = training_losses(net, lambda: bce_dice(net(x), y))
    assert np.mean(losses[-3:]) < 0.8 * losses[0]

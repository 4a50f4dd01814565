"""The U-Net family and the SMP baselines: parameter counts vs the papers, shapes, gradients, training steps.

Full-width forward passes of the 26-36M-parameter baselines cost seconds each on CPU, so the size
sweep runs on slim variants (same code path, fewer channels) and the full models run once at a
small size; the full sweep is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lesion_lightning.models import create_model, get_model_spec
from lesion_lightning.utils.complexity import count_flops, count_params

from model_checks import bce_dice, ham_batch, thop_style_macs

SLIM = {
    "unet": {"widths": (8, 16, 32, 64, 128)},
    "unet3plus": {"widths": (8, 16, 32, 64, 128), "cat_channels": 8},
    "unet_aksoy": {},  # 7.7M, cheap enough at full width
    "unetplusplus": {"encoder_name": "resnet18", "decoder_channels": (32, 16, 16, 8, 8)},
    "deeplabv3plus": {"encoder_name": "resnet18", "decoder_channels": 32},
}
SIZES = [(128, 128), (224, 224), (256, 256), (192, 256), (100, 130)]


def _conv_params(cin: int, cout: int, k: int = 3) -> int:
    return k * k * cin * cout + cout


def test_unet_aksoy_matches_the_authors_code() -> None:
    net = create_model("unet_aksoy")
    assert count_params(net) == 7_697_345
    # Two 3x3 convs per level, no BatchNorm or dropout, one sigmoid output channel.
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in net.modules())
    assert net.head.out_channels == 1
    spec = get_model_spec("unet_aksoy")
    assert spec.input_size == (3, 128, 128) and spec.preset == "unet_aksoy" and spec.num_classes == 1


def test_unet_aksoy_flops_at_128() -> None:
    flops = count_flops(create_model("unet_aksoy"), (3, 128, 128))
    assert flops == pytest.approx(18.4e9, rel=0.01)


def test_unet_is_ronnebergers_31m() -> None:
    net = create_model("unet")
    widths = (64, 128, 256, 512, 1024)
    chans = (3, *widths)
    expected = sum(_conv_params(chans[i], chans[i + 1]) + _conv_params(chans[i + 1], chans[i + 1]) for i in range(5))
    for deep, skip in zip(widths[:0:-1], widths[-2::-1]):
        expected += 4 * deep * skip + skip  # 2x2 transposed conv
        expected += _conv_params(2 * skip, skip) + _conv_params(skip, skip)
    expected += _conv_params(64, 2, 1)
    assert count_params(net) == expected
    assert count_params(net) == pytest.approx(get_model_spec("unet").paper["params"], rel=0.01)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_unet3plus_parameter_count_near_the_papers() -> None:
    n = count_params(create_model("unet3plus"))
    assert n == pytest.approx(26.9e6, rel=0.01)
    assert n == pytest.approx(26.97e6, rel=0.001)  # the UNet 3+ paper's own figure


def test_unet3plus_has_full_scale_skips() -> None:
    net = create_model("unet3plus", **SLIM["unet3plus"])
    # Every decoder level reduces all five scales to cat_channels and fuses 5 x cat_channels.
    assert len(net.reduce) == 4 and all(len(r) == 5 for r in net.reduce)
    assert all(f[0].in_channels == 40 for f in net.fuse)
    seen = []
    for reduce in net.reduce:
        for conv in reduce:
            conv.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, 64, 64))
    # Decoder levels at 1/8, 1/4, 1/2, 1/1: all five inputs of a level share its resolution.
    sides = [s[0] for s in seen]
    assert sides == [8] * 5 + [16] * 5 + [32] * 5 + [64] * 5


def test_smp_baselines_use_the_documented_encoders() -> None:
    upp = create_model("unetplusplus")
    assert type(upp.net).__name__ == "UnetPlusPlus"
    assert count_params(upp) == pytest.approx(34.64e6, rel=0.001)  # vgg16_bn without SMP's unused center block
    assert count_params(upp) == pytest.approx(get_model_spec("unetplusplus").paper["params"], rel=0.05)
    assert isinstance(upp.net.decoder.center, nn.Identity)
    dlv = create_model("deeplabv3plus")
    assert type(dlv.net).__name__ == "DeepLabV3Plus"
    assert count_params(dlv) == pytest.approx(26.68e6, rel=0.001)  # resnet50


@pytest.mark.parametrize("name", list(SLIM))
def test_output_shape_equals_input_shape(name: str) -> None:
    torch.manual_seed(0)
    net = create_model(name, **SLIM[name]).eval()
    classes = get_model_spec(name).num_classes
    with torch.no_grad():
        for size in SIZES:
            out = net(torch.randn(1, 3, *size))
            assert out.shape == (1, classes, *size), size
            assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLIM))
def test_full_width_output_shapes_at_every_size(name: str) -> None:
    net = create_model(name).eval()
    with torch.no_grad():
        for size in SIZES:
            assert net(torch.randn(1, 3, *size)).shape[-2:] == size


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 2:
        return F.cross_entropy(logits, y[:, 0].long())
    return bce_dice(logits, y)  # BCE + (1 - Dice), Aksoy's eq. 1


def _train(name: str, kwargs: dict, x: torch.Tensor, y: torch.Tensor, steps: int = 15) -> list[float]:
    torch.manual_seed(0)
    net = create_model(name, **kwargs).train()
    # 3e-4: the BatchNorm-free U-Nets oscillate at 1e-3 on a 4-image batch.
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["unet_aksoy", "unet", "unet3plus"])
def test_training_steps_on_real_samples_reduce_loss(name: str, ham10000_root: Path) -> None:
    x, y = ham_batch(ham10000_root, 4, 64, per_image_minmax=False)
    losses = _train(name, SLIM[name], x, y)
    assert np.mean(losses[-3:]) < 0.85 * losses[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLIM))
def test_full_width_training_steps_reduce_loss(name: str, ham10000_root: Path) -> None:
    x, y = ham_batch(ham10000_root, 4, 64, per_image_minmax=False)
    losses = _train(name, {}, x, y)
    assert np.mean(losses[-3:]) < 0.85 * losses[0]


# -- the small U-Net and UNet++ of SCSONet Table 1 (after MALUNet / EGE-UNet) ----------------------------
@pytest.mark.parametrize("name, params_m, gflops", [("unet_small", 7.77, 13.76), ("unetplusplus_small", 9.16, 34.86)])
def test_small_unets_match_scsonet_table1(name: str, params_m: float, gflops: float) -> None:
    """Params equal the printed figure at its precision (two decimals, M); the printed 'GFLOPs' are thop's
    MACs at 256x256, matched within 0.5% by thop's counting rules (tests/model_checks.thop_style_macs)."""
    spec = get_model_spec(name)
    assert (spec.paper["params"] / 1e6, spec.paper["gmacs"]) == (params_m, gflops)
    net = create_model(name)
    assert round(count_params(net) / 1e6, 2) == params_m
    assert thop_style_macs(net, spec.input_size) / 1e9 == pytest.approx(gflops, rel=0.005)
    # torch's counter, our convention everywhere else, counts the real MACs: fewer for the transposed convs
    # (4x less than thop) and nothing for BatchNorm / upsampling
    assert count_flops(net, spec.input_size) / 2 < thop_style_macs(net, spec.input_size)


def test_unet_small_layout() -> None:
    net = create_model("unet_small")
    assert [e[0][0].out_channels for e in net.encoders] == [32, 64, 128, 256, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 18  # 9 double convs
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())


def test_unetplusplus_small_nested_nodes_and_deep_supervision() -> None:
    net = create_model("unetplusplus_small", widths=(4, 8, 16, 32, 64))
    # level i has 5 - i nodes; X(0, 4) fuses four same-level outputs with one upsampled from level 1
    assert [len(level) for level in net.nodes] == [5, 4, 3, 2, 1]
    assert net.nodes[0][4][0][0].in_channels == 4 * 4 + 8
    deep = create_model("unetplusplus_small", widths=(4, 8, 16, 32, 64), deep_supervision=True)
    assert len(deep.heads) == 4
    x = torch.randn(1, 3, 50, 70)
    assert net(x).shape == deep(x).shape == (1, 1, 50, 70)

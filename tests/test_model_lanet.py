"""LANET against its paper (appendix A, Table 3, Algorithm 1) and its shared blocks (ASPP, attention, conv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lesion_lightning.layers import (
    ASPP,
    CBAM,
    ConvBNAct,
    DepthwiseSeparableConv,
    PooledUnpooledAttention,
    SpatialAttention,
    pool_unpool_residual,
)
from lesion_lightning.models import create_model, get_model_spec
from lesion_lightning.utils.complexity import count_flops, count_params

from model_checks import ham_batch

# Appendix A, in its order: (layer, output side, learnable shape (weights; BN: channels), count column).
APPENDIX_A = [
    ("conv", 224, (3, 3, 3, 16), 448), ("bn", 224, (16,), 32), ("group", 224, (3, 3, 1, 16), 160),
    ("conv", 224, (3, 3, 16, 16), 2320), ("conv", 224, (1, 1, 16, 16), 272),
    ("conv", 112, (3, 3, 16, 32), 4640), ("bn", 112, (32,), 64), ("group", 112, (3, 3, 1, 32), 320),
    ("conv", 112, (3, 3, 32, 32), 9248), ("conv", 112, (1, 1, 32, 32), 1056),
    ("conv", 56, (3, 3, 32, 64), 18496), ("bn", 56, (64,), 128), ("group", 56, (3, 3, 1, 64), 640),
    ("conv", 56, (3, 3, 64, 64), 36928), ("conv", 56, (1, 1, 64, 64), 4160),
    ("conv", 28, (3, 3, 64, 128), 73856), ("bn", 28, (128,), 256), ("group", 28, (3, 3, 1, 128), 1280),
    ("conv", 28, (3, 3, 128, 128), 147584), ("conv", 28, (1, 1, 128, 128), 16512),
    ("conv", 14, (1, 1, 128, 16), 2064), ("bn", 14, (16,), 32),
    ("conv", 14, (3, 3, 128, 16), 18448), ("bn", 14, (16,), 32),
    ("conv", 14, (3, 3, 128, 16), 18448), ("bn", 14, (16,), 32),
    ("conv", 14, (3, 3, 128, 16), 18448), ("bn", 14, (16,), 32),
    ("tconv", 28, (2, 2, 128, 64), 32896), ("conv", 28, (3, 3, 256, 128), 295040), ("bn", 28, (128,), 256),
    ("group", 28, (3, 3, 1, 128), 1280),
    ("tconv", 56, (2, 2, 64, 128), 32832), ("conv", 56, (3, 3, 128, 64), 73792), ("bn", 56, (64,), 128),
    ("group", 56, (3, 3, 1, 64), 640),
    ("tconv", 112, (2, 2, 32, 64), 8224), ("conv", 112, (3, 3, 64, 32), 18464), ("bn", 112, (32,), 64),
    ("group", 112, (3, 3, 1, 32), 320),
    ("tconv", 224, (2, 2, 16, 32), 2064), ("conv", 224, (3, 3, 32, 16), 4624), ("bn", 224, (16,), 32),
    ("group", 224, (3, 3, 1, 16), 160),
    ("conv", 224, (1, 1, 16, 2), 34),
]
# Table 3: learnable parameters per block (decoder block 4 includes the final 1x1 conv).
TABLE_3 = {"enc1": 3232, "enc2": 15328, "enc3": 60352, "enc4": 239488, "aspp": 57536,
           "dec1": 329472, "dec2": 107392, "dec3": 27072, "dec4": 6914}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("lanet").eval()


def _learnable_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))]


def test_registry_entry() -> None:
    spec = get_model_spec("lanet")
    assert spec.input_size == (3, 224, 224)
    assert spec.preset == "lanet"
    assert spec.num_classes == 2
    assert spec.paper["params"] == 846_786 and spec.paper["gflops"] == 4.22


def test_parameter_count_is_exactly_the_papers(model: nn.Module) -> None:
    assert count_params(model) == 846_786 == sum(row[3] for row in APPENDIX_A)


def test_layers_match_appendix_a_one_by_one(model: nn.Module) -> None:
    layers = _learnable_layers(model)
    assert len(layers) == len(APPENDIX_A)
    for i, (layer, (kind, _, shape, count)) in enumerate(zip(layers, APPENDIX_A)):
        assert sum(p.numel() for p in layer.parameters()) == count, (i, layer)
        if kind == "bn":
            assert isinstance(layer, nn.BatchNorm2d) and layer.num_features == shape[0]
            continue
        kh, kw, cin, cout = shape
        assert layer.kernel_size == (kh, kw), (i, layer)
        assert layer.bias is not None  # MATLAB layers keep their bias, appendix A counts it
        if kind == "tconv":
            # MATLAB prints transposed-conv weights as k x k x filters x channels.
            assert isinstance(layer, nn.ConvTranspose2d)
            assert (layer.out_channels, layer.in_channels) == (cin, cout)
        elif kind == "group":
            assert layer.groups == layer.in_channels == layer.out_channels == cout
        else:
            assert (layer.in_channels, layer.out_channels, layer.groups) == (cin, cout, 1)


def test_block_totals_match_table_3(model: nn.Module) -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    got = {f"enc{i + 1}": count(block) for i, block in enumerate(model.encoders)}
    got["aspp"] = count(model.aspp)
    got.update({f"dec{i + 1}": count(block) for i, block in enumerate(model.decoders)})
    got["dec4"] += count(model.head)
    assert got == TABLE_3


def test_aspp_dilations_and_bottleneck_resolution(model: nn.Module) -> None:
    assert model.aspp.dilations == (1, 6, 12, 18)
    kernels = [b[0].kernel_size for b in model.aspp.branches]
    assert kernels == [(1, 1), (3, 3), (3, 3), (3, 3)]
    assert [b[0].dilation for b in model.aspp.branches][1:] == [(6, 6), (12, 12), (18, 18)]
    seen = {}
    model.aspp.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert seen["shape"] == (1, 64, 14, 14)  # four 16-channel branches on 14x14


def test_activations_are_the_papers(model: nn.Module) -> None:
    kinds = {type(m) for m in model.modules()}
    assert {nn.ReLU, nn.LeakyReLU, nn.ReLU6} <= kinds
    assert all(m.negative_slope == 0.01 for m in model.modules() if isinstance(m, nn.LeakyReLU))


def test_spatial_conv_option_adds_the_7x7_convs() -> None:
    net = create_model("lanet", spatial_conv=True)
    assert count_params(net) == 846_786 + 4 * (2 * 7 * 7 + 1)


def test_flops_equal_the_appendix_a_conv_count(model: nn.Module) -> None:
    macs = 0
    for kind, side, shape, _ in APPENDIX_A:
        if kind == "bn":
            continue
        per_pixel = int(np.prod(shape)) // (4 if kind == "tconv" else 1)  # 2x2 stride-2: one tap per output pixel
        macs += side * side * per_pixel
    assert count_flops(model, (3, 224, 224)) == 2 * macs
    assert 3.4e9 < 2 * macs < 3.6e9  # vs the paper's 4.22 GFLOPs: see docs/models/lanet.md


@pytest.mark.parametrize("size", [(128, 128), (224, 224), (256, 256), (192, 256), (100, 130)])
def test_output_shape_equals_input_shape(model: nn.Module, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 2, *size)
    assert torch.isfinite(out).all()


def test_odd_sizes_are_reflect_padded_to_16_and_cropped_back(model: nn.Module) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 3, 100, 90)
    padded = F.pad(x, (0, 6, 0, 12), mode="reflect")  # to 112 x 96, both multiples of 16
    with torch.no_grad():
        out, ref = model(x), model(padded)
    assert out.shape == (1, 2, 100, 90)
    assert torch.allclose(out, ref[..., :100, :90], atol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = create_model("lanet", spatial_conv=True).train()
    logits = net(torch.randn(2, 3, 64, 64))
    F.cross_entropy(logits, torch.randint(0, 2, (2, 64, 64))).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_pool_unpool_residual_reproduces_the_papers_example() -> None:
    x = torch.tensor([[16, 2, 3, 13], [5, 11, 10, 8], [9, 7, 6, 12], [4, 14, 15, 1.0]])[None, None]
    expected = torch.tensor([[0, 2, 3, 0], [5, 11, 10, 8], [9, 7, 6, 12], [4, 0, 0, 1.0]])[None, None]
    assert torch.equal(pool_unpool_residual(x), expected)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 7, 9), (1, 2, 1, 5)])
def test_pool_unpool_residual_equals_max_unpool(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape)
    if min(shape[-2:]) >= 2:
        pooled, idx = F.max_pool2d(x, 2, return_indices=True)
        expected = x - F.max_unpool2d(pooled, idx, 2, output_size=x.shape[-2:])
    else:
        expected = x  # nothing to pool
    assert torch.equal(pool_unpool_residual(x), expected)


def test_pooled_unpooled_attention_gates_and_counts() -> None:
    att = PooledUnpooledAttention(8)
    assert count_params(att) == (9 * 64 + 8) + (64 + 8)  # conv3x3 + conv1x1, nothing else
    assert count_params(PooledUnpooledAttention(8, spatial_conv=True)) == count_params(att) + 99
    x = torch.rand(2, 8, 16, 16)
    y = att(x)
    assert y.shape == x.shape
    # Both gates are sigmoids, so every value shrinks towards zero, none flips sign.
    assert (y.abs() <= x.abs() + 1e-6).all() and (y >= 0).all()
    assert not torch.allclose(y, x)


def test_spatial_attention_and_cbam() -> None:
    assert count_params(SpatialAttention(None)) == 0
    assert count_params(SpatialAttention(7)) == 99
    x = torch.randn(2, 32, 10, 12)
    assert CBAM(32, reduction=8)(x).shape == x.shape
    assert count_params(CBAM(32, reduction=8)) == (32 * 4 + 4) + (4 * 32 + 32) + 99


def test_aspp_contract() -> None:
    x = torch.randn(2, 32, 12, 12)
    plain = ASPP(32, 8, (1, 6, 12, 18))
    assert plain(x).shape == (2, 32, 12, 12) and plain.out_channels == 32
    assert plain.branches[0][0].bias is None  # BN follows: no bias by default
    pooled = ASPP(32, 8, (1, 2, 3), first_branch_1x1=False, image_pooling=True, out_channels=20,
                  activation=nn.SiLU)
    assert pooled(x).shape == (2, 20, 12, 12)
    assert pooled.branches[0][0].kernel_size == (3, 3)
    assert any(isinstance(m, nn.SiLU) for m in pooled.modules())
    bare = ASPP(32, 8, (1, 6), norm=False, activation=None)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in bare.modules())
    assert bare.branches[1][0].bias is not None
    with pytest.raises(ValueError, match="at least one dilation"):
        ASPP(32, 8, ())


def test_conv_blocks() -> None:
    x = torch.randn(1, 8, 9, 9)
    assert ConvBNAct(8, 16, 3, stride=2)(x).shape == (1, 16, 5, 5)
    dsc = DepthwiseSeparableConv(8, 16)
    assert dsc(x).shape == (1, 16, 9, 9)
    assert count_params(dsc) == (8 * 9 + 16) + (8 * 16 + 32)
    with pytest.raises(ValueError, match="odd kernel"):
        ConvBNAct(8, 8, 2)


def test_training_steps_on_real_samples_reduce_loss(ham10000_root: Path) -> None:
    torch.manual_seed(0)
    x, y = ham_batch(ham10000_root, 4, 64, per_image_minmax=False)
    y = y[:, 0].long()
    assert 0 < y.float().mean() < 1
    net = create_model("lanet").train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * losses[0]


def test_table11_ablation_switches_remove_exactly_their_blocks():
    full = create_model("lanet")
    no_aspp = create_model("lanet", aspp=False)
    plain = create_model("lanet", attention=False, aspp=False)
    assert not any(isinstance(m, PooledUnpooledAttention) for m in plain.modules())
    assert sum(isinstance(m, PooledUnpooledAttention) for m in no_aspp.modules()) == 4
    assert not any(isinstance(m, ASPP) for m in no_aspp.modules()) and isinstance(full.aspp, ASPP)
    attention_params = sum(count_params(m) for m in full.modules() if isinstance(m, PooledUnpooledAttention))
    # Only the bottleneck differs between no_aspp and plain: the attention blocks account for the rest.
    assert count_params(no_aspp) - count_params(plain) == attention_params
    x = torch.rand(1, 3, 64, 96)
    for net in (no_aspp, plain):
        assert net(x).shape == (1, 2, 64, 96)

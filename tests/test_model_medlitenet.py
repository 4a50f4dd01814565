"""MedLiteNet: shapes under progressive resizing, parameter budget, gradients, real-sample training, blocks."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from timm.models._efficientnet_blocks import InvertedResidual

from lesion_lightning.layers.boundary import BoundaryAwareAttention, boundary_map, edge_kernels
from lesion_lightning.layers.mbconv import MBConvStage
from lesion_lightning.layers.transformer import FeatureMapTransformer, LocalGlobalFusion
from lesion_lightning.models import create_model, get_model_spec, list_models
from lesion_lightning.models.ensemble import WeightedEnsemble
from lesion_lightning.models.medlitenet import MEDLITENET_VARIANTS, MedLiteNet
from lesion_lightning.utils.complexity import count_flops, count_params

VARIANTS = ("medlitenet", "medlitenet_b", "medlitenet_c")


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in VARIANTS}


def test_registry_entries() -> None:
    assert set(VARIANTS) | {"medlitenet_ensemble"} <= set(list_models())
    spec = get_model_spec("medlitenet")
    assert spec.input_size == (3, 256, 256)
    assert spec.preset == "medlitenet"
    assert spec.num_classes == 1
    assert spec.paper["params"] == 3_200_000
    assert spec.paper["dice"] == pytest.approx(0.897)
    ens = get_model_spec("medlitenet_ensemble").paper
    assert (ens["dice"], ens["iou"]) == (pytest.approx(0.904), pytest.approx(0.830))


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("medlitenet", (256, 256)),
        ("medlitenet", (384, 384)),
        ("medlitenet", (512, 512)),
        ("medlitenet", (192, 256)),
        ("medlitenet_b", (384, 384)),  # learned positional grid interpolated from 8x8 to 12x12
        ("medlitenet_b", (200, 136)),
        ("medlitenet_c", (256, 256)),
        ("medlitenet_c", (97, 130)),  # odd sizes: strided convs round up, the decoder resizes to skips
    ],
)
def test_output_shape(models: dict[str, torch.nn.Module], name: str, size: tuple[int, int]) -> None:
    with torch.no_grad():
        y = models[name](torch.randn(1, 3, *size))
    assert y.shape == (1, 1, *size)
    assert torch.isfinite(y).all()


def test_parameter_budget(models: dict[str, torch.nn.Module]) -> None:
    counts = {name: count_params(m) for name, m in models.items()}
    for name, n in counts.items():
        assert n < 3_300_000, f"{name} has {n} parameters (paper: < 3.3M)"
    # Variant A is the paper's single model: 3.2M (Table I), encoder ~1.8M (Sec. III-B).
    a = models["medlitenet"]
    assert isinstance(a, MedLiteNet)
    assert counts["medlitenet"] == pytest.approx(get_model_spec("medlitenet").paper["params"], rel=0.01)
    assert sum(p.numel() for p in a.encoder_parameters()) == pytest.approx(1_800_000, rel=0.05)
    ensemble = create_model("medlitenet_ensemble")
    assert isinstance(ensemble, WeightedEnsemble)
    assert count_params(ensemble) == sum(counts.values()) < 10_000_000
    # The variants really differ (complementary), not three copies.
    assert len(set(counts.values())) == 3


def test_aspp_and_scse_in_parallel_with_per_branch_projections(models: dict[str, torch.nn.Module]) -> None:
    """Sec. III-E: five branches (four dilated 3x3 + image pooling), each ending in its own 1x1 conv, fused
    by a 1x1 conv to 256 channels (the paper's 256-512); abstract / Sec. I-C: SCSE in parallel with ASPP."""
    net = models["medlitenet"]
    cfg, ctx = net.config, net.context
    branches = [*ctx.aspp.branches, ctx.aspp.pool_branch]
    convs = [[m for m in b.modules() if isinstance(m, torch.nn.Conv2d)] for b in branches]
    assert [[c.kernel_size for c in cs] for cs in convs] == [[(3, 3), (1, 1)]] * 4 + [[(1, 1), (1, 1)]]
    assert all(cs[-1].out_channels == cfg.aspp_projection_channels for cs in convs)
    assert [cs[0].dilation[0] for cs in convs[:4]] == list(cfg.aspp_dilations)
    assert cfg.aspp_out_channels == 256
    fuse = ctx.fuse.conv
    assert (fuse.in_channels, fuse.out_channels) == (5 * cfg.aspp_projection_channels + cfg.embed_dim, 256)
    # SCSE acts on the same input as ASPP, not after the decoder convolutions
    assert not any("scse" in name for name, _ in net.decoder.named_modules())
    x = torch.randn(1, cfg.embed_dim, 8, 8)
    unfused = copy.deepcopy(ctx)
    unfused.fuse = torch.nn.Identity()  # what the 1x1 fuse sees: [ASPP branches || SCSE(x)]
    with torch.no_grad():
        out = unfused(x)
        torch.testing.assert_close(out[:, -cfg.embed_dim:], ctx.scse(x))
        torch.testing.assert_close(out[:, :-cfg.embed_dim], ctx.aspp(x))


def test_flops_scale_with_resolution(models: dict[str, torch.nn.Module]) -> None:
    m = models["medlitenet"]
    f256 = count_flops(m, (3, 256, 256))
    f512 = count_flops(m, (3, 512, 512))
    assert f256 > 0
    # Convolutions scale with the area (4x); bottleneck attention a little faster (tokens squared).
    assert 3.9 < f512 / f256 < 4.5


def _load_ham10000(root: Path, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = sorted((root / "HAM10000_images_part_1").glob("*.jpg"))[:n]
    assert len(images) == n, f"expected {n} HAM10000 images under {root}"
    xs, ys = [], []
    for path in images:
        mask_path = root / "HAM10000_segmentations_lesion_tschandl" / f"{path.stem}_segmentation.png"
        img = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
        mask = np.asarray(Image.open(mask_path).convert("L").resize((size, size), Image.NEAREST)) > 127
        xs.append(torch.from_numpy((img / 255.0 - 0.5) / 0.25).permute(2, 0, 1))
        ys.append(torch.from_numpy(mask).float()[None])
    return torch.stack(xs), torch.stack(ys)


def _bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return 0.5 * F.binary_cross_entropy_with_logits(logits, target) + 0.5 * dice


def test_training_steps_reduce_loss_on_real_samples(ham10000_root: Path) -> None:
    torch.manual_seed(0)
    x, y = _load_ham10000(ham10000_root, 4, 64)
    assert 0 < y.mean() < 1
    model = create_model("medlitenet").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = _bce_dice(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # the paper's clipping
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="variant 'z'"):
        create_model("medlitenet", variant="z")
    with pytest.raises(TypeError, match="transformer_layers"):
        create_model("medlitenet", transformer_layers=2)
    with pytest.raises(ValueError, match="depths"):
        create_model("medlitenet", depths=[1, 2, 3])
    with pytest.raises(ValueError, match="batches of 2 or more"):
        create_model("medlitenet").train()(torch.randn(1, 3, 64, 64))
    # Overrides change the config (lists from YAML/JSON become tuples).
    m = create_model("medlitenet", transformer_depth=1, depths=[1, 1, 1, 1])
    assert m.config.depths == (1, 1, 1, 1) and len(m.transformer.blocks) == 1
    assert MEDLITENET_VARIANTS["a"].transformer_depth == 2


# -- blocks -------------------------------------------------------------------------------------


def test_mbconv_stage_uses_timm_inverted_residual() -> None:
    stage = MBConvStage(32, 64, depth=3, stride=2)
    assert all(isinstance(b, InvertedResidual) for b in stage)
    assert not stage[0].has_skip and stage[1].has_skip and stage[2].has_skip
    assert stage[0].conv_pw.out_channels == 32 * 6  # expansion t = 6
    assert isinstance(stage[0].bn1.act, torch.nn.SiLU)
    assert stage(torch.randn(1, 32, 15, 20)).shape == (1, 64, 8, 10)


@pytest.mark.parametrize("kind", ["laplacian", "sobel"])
def test_boundary_map_responds_only_at_edges(kind: str) -> None:
    x = torch.zeros(1, 3, 16, 16)
    x[..., :, 8:] = 1.0  # a vertical step between columns 7 and 8
    b = boundary_map(x, edge_kernels(kind))
    assert b.shape == (1, 1, 16, 16)
    # Flat regions, including the image border, give no response (the Sobel magnitude has a 1e-6 floor).
    assert b[..., :, :6].max() < 1e-5 and b[..., :, 10:].max() < 1e-5
    assert b[..., :, 7:9].min() > 1.0
    assert boundary_map(torch.full((1, 2, 8, 8), 3.0), edge_kernels(kind)).max() < 1e-5


def test_boundary_attention_amplifies_between_1x_and_2x() -> None:
    baa = BoundaryAwareAttention(8, context_channels=4)
    x = torch.rand(2, 8, 12, 10) + 0.1
    y = baa(x, context=torch.randn(2, 4, 6, 5))  # context at a coarser size is resized
    assert torch.all(y >= x) and torch.all(y <= 2 * x)
    assert not torch.allclose(y, x)
    with pytest.raises(ValueError, match="context_channels"):
        BoundaryAwareAttention(8)(x, context=torch.randn(2, 4, 12, 10))


@pytest.mark.parametrize("pos_embed", ["sincos", "learned"])
def test_feature_map_transformer_any_size(pos_embed: str) -> None:
    torch.manual_seed(0)
    t = FeatureMapTransformer(32, 16, depth=1, num_heads=2, pos_embed=pos_embed, pos_grid=(4, 4)).eval()
    for h, w in [(4, 4), (6, 9)]:
        assert t(torch.randn(1, 32, h, w)).shape == (1, 16, h, w)
    # The positional code breaks permutation symmetry: identical tokens get different outputs.
    out = t(torch.ones(1, 32, 3, 5))
    assert not torch.allclose(out[..., 0, 0], out[..., 2, 4])


def test_local_global_fusion_matches_eq5() -> None:
    torch.manual_seed(0)
    fusion = LocalGlobalFusion(16, 16).eval()  # same width: F_conv enters unchanged
    fc, ft = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    expected = torch.relu(fusion.fuse(torch.cat([fc, ft], 1))) + fc + ft
    assert torch.allclose(fusion(fc, ft), expected)
    assert LocalGlobalFusion(32, 16)(torch.randn(1, 32, 8, 8), ft).shape == (1, 16, 4, 4)

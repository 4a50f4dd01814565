"""Loss formulas against hand computation, gradients, head equivalence and the spec registry."""

from __future__ import annotations

import math

import pytest
import torch

from lesion_lightning.losses import LOSSES, CompositeLoss, build_loss

# A 2-image batch of 1x3 "images": logits and targets small enough to work by hand.
LOGITS = torch.tensor([[[[2.0, -1.0, 0.5]]], [[[-0.3, 1.5, -2.0]]]])
TARGET = torch.tensor([[[[1.0, 0.0, 1.0]]], [[[0.0, 1.0, 1.0]]]])


def _probs() -> list[list[float]]:
    return [[1 / (1 + math.exp(-z)) for z in row[0][0].tolist()] for row in LOGITS]


def _targets() -> list[list[float]]:
    return [row[0][0].tolist() for row in TARGET]


def test_bce_matches_hand_computation():
    terms = [-(g * math.log(p) + (1 - g) * math.log(1 - p))
             for ps, gs in zip(_probs(), _targets()) for p, g in zip(ps, gs)]
    assert float(build_loss("bce")(LOGITS, TARGET)) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


@pytest.mark.parametrize("smooth", [1.0, 0.0])
def test_dice_matches_hand_computation_batch_and_per_image(smooth):
    ps, gs = _probs(), _targets()
    inter = [sum(p * g for p, g in zip(pr, gr)) for pr, gr in zip(ps, gs)]
    sp, sg = [sum(pr) for pr in ps], [sum(gr) for gr in gs]
    batch = 1 - (2 * sum(inter) + smooth) / (sum(sp) + sum(sg) + smooth)
    per_image = sum(1 - (2 * i + smooth) / (a + b + smooth) for i, a, b in zip(inter, sp, sg)) / 2
    assert float(build_loss({"name": "dice", "smooth": smooth})(LOGITS, TARGET)) == pytest.approx(batch, rel=1e-6)
    loss = build_loss({"name": "dice", "smooth": smooth, "per_image": True})
    assert float(loss(LOGITS, TARGET)) == pytest.approx(per_image, rel=1e-6)
    assert abs(batch - per_image) > 1e-4  # the two reductions really differ here


def test_jaccard_is_slsnet_eq9_with_squared_terms():
    ps, gs = _probs(), _targets()
    per = []
    for pr, gr in zip(ps, gs):
        gp = sum(p * g for p, g in zip(pr, gr))
        per.append(1 - gp / (sum(g * g for g in gr) + sum(p * p for p in pr) - gp))
    assert float(build_loss("jaccard")(LOGITS, TARGET)) == pytest.approx(sum(per) / 2, rel=1e-6)
    # Not smp's |g| + |p| - I form: for soft p the two differ.
    import segmentation_models_pytorch as smp

    smp_value = float(smp.losses.JaccardLoss("binary", smooth=0.0)(LOGITS, TARGET))
    ours_batch = float(build_loss({"name": "jaccard", "per_image": False})(LOGITS, TARGET))
    assert abs(smp_value - ours_batch) > 1e-3


def test_l1_and_ce_match_hand_computation():
    ps, gs = _probs(), _targets()
    l1 = sum(abs(p - g) for pr, gr in zip(ps, gs) for p, g in zip(pr, gr)) / 6
    assert float(build_loss("l1")(LOGITS, TARGET)) == pytest.approx(l1, rel=1e-6)
    two = torch.cat([torch.zeros_like(LOGITS) + 0.25, LOGITS + 0.25], dim=1)  # (B,2,H,W)
    ce = 0.0
    for b in range(2):
        for j in range(3):
            z0, z1 = float(two[b, 0, 0, j]), float(two[b, 1, 0, j])
            label = int(TARGET[b, 0, 0, j])
            ce -= [z0, z1][label] - math.log(math.exp(z0) + math.exp(z1))
    assert float(build_loss("ce")(two, TARGET)) == pytest.approx(ce / 6, rel=1e-6)


@pytest.mark.parametrize("name", ["bce", "dice", "bce_dice", "jaccard", "l1"])
def test_two_channel_softmax_head_equals_one_channel_on_lesion_logit(name):
    torch.manual_seed(0)
    z0 = torch.randn(2, 1, 8, 8)
    lesion = torch.randn(2, 1, 8, 8) * 3
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    two = torch.cat([z0, z0 + lesion], dim=1)  # softmax channel 1 == sigmoid(lesion)
    assert float(build_loss(name)(two, target)) == pytest.approx(float(build_loss(name)(lesion, target)), rel=1e-5)
    # and the softmax lesion probability is what the 1-channel loss sees
    assert torch.allclose(torch.softmax(two, 1)[:, 1:2], torch.sigmoid(lesion), atol=1e-6)


def test_ce_two_channel_equals_bce_and_rejects_one_channel_head():
    torch.manual_seed(1)
    two = torch.randn(2, 2, 6, 6)
    target = (torch.rand(2, 1, 6, 6) > 0.5).float()
    assert float(build_loss("ce")(two, target)) == pytest.approx(
        float(build_loss("bce")(two[:, 1:2] - two[:, 0:1], target)), rel=1e-5
    )
    with pytest.raises(ValueError, match="ce.*2-channel"):
        build_loss("ce")(torch.randn(2, 1, 6, 6), target)


@pytest.mark.parametrize("name", ["dice", "jaccard", "bce_dice"])
def test_perfect_prediction_gives_near_zero_overlap_loss(name):
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    logits = (target * 2 - 1) * 30  # saturated, correct everywhere
    assert float(build_loss(name)(logits, target)) < 1e-4
    wrong = -logits
    assert float(build_loss(name)(wrong, target)) > 0.9


@pytest.mark.parametrize("spec", ["bce", "dice", "bce_dice", "jaccard", "l1", "ce"])
def test_gradients_are_finite_even_for_extreme_logits_and_empty_targets(spec):
    channels = 2 if spec == "ce" else 1
    logits = torch.tensor([-200.0, -30.0, 0.0, 30.0, 200.0]).repeat(2, channels, 4, 1).requires_grad_(True)
    target = torch.zeros(2, 1, 4, 5)
    target[0, 0, :2] = 1  # image 1 has an empty target
    loss = build_loss(spec)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_bce_dice_weights_and_logged_parts():
    bce, dice = float(build_loss("bce")(LOGITS, TARGET)), float(build_loss("dice")(LOGITS, TARGET))
    loss = build_loss({"name": "bce_dice", "bce_weight": 0.5, "dice_weight": 0.5})  # MedLiteNet
    assert float(loss(LOGITS, TARGET)) == pytest.approx(0.5 * bce + 0.5 * dice, rel=1e-6)
    assert set(loss.last_terms) == {"bce", "dice"}
    assert float(loss.last_terms["bce"]) == pytest.approx(bce, rel=1e-6)
    assert not loss.last_terms["dice"].requires_grad
    default = build_loss("bce_dice")  # U-Net: BCE + (1 - Dice); SCSONet 1/1
    assert float(default(LOGITS, TARGET)) == pytest.approx(bce + dice, rel=1e-6)


def test_list_spec_sums_weighted_terms_and_names_each_part():
    spec = [{"name": "bce"}, {"name": "l1", "weight": 0.1}, {"name": "jaccard", "weight": 0.5}]  # SLSNet generator
    loss = build_loss(spec)
    assert isinstance(loss, CompositeLoss)
    parts = {n: float(build_loss(n)(LOGITS, TARGET)) for n in ("bce", "l1", "jaccard")}
    expected = parts["bce"] + 0.1 * parts["l1"] + 0.5 * parts["jaccard"]
    assert float(loss(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-6)
    assert {k: float(v) for k, v in loss.last_terms.items()} == pytest.approx(parts, rel=1e-6)
    twice = build_loss(["dice", {"name": "dice", "per_image": True}])
    twice(LOGITS, TARGET)
    assert set(twice.last_terms) == {"dice", "dice_2"}
    weighted = build_loss({"name": "l1", "weight": 2.0})
    assert float(weighted(LOGITS, TARGET)) == pytest.approx(2 * parts["l1"], rel=1e-6)


def test_bad_specs_and_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"unknown loss 'focal'.*bce, bce_dice, ce, deep_supervision, dice, jaccard, l1"):
        build_loss("focal")
    with pytest.raises(ValueError, match=r"'dice'.*unknown option.*smoth"):
        build_loss({"name": "dice", "smoth": 1})
    with pytest.raises(ValueError, match="no 'name'"):
        build_loss({"weight": 1})
    with pytest.raises(ValueError, match="at least one term"):
        build_loss([])
    with pytest.raises(ValueError, match="target"):
        build_loss("bce")(LOGITS, torch.zeros(2, 1, 1, 4))
    with pytest.raises(ValueError, match="logits"):
        build_loss("dice")(torch.zeros(2, 3, 1, 3), TARGET)
    # (B,H,W) targets are accepted
    assert float(build_loss("dice")(LOGITS, TARGET[:, 0])) == pytest.approx(float(build_loss("dice")(LOGITS, TARGET)))
    assert sorted(LOSSES) == ["bce", "bce_dice", "ce", "deep_supervision", "dice", "jaccard", "l1"]


def _official_bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """EGE-UNet's BceDiceLoss: nn.BCELoss on the sigmoid + 1 - the mean per-image Dice (smooth 1)."""
    p, g = torch.sigmoid(logits).flatten(1), target.flatten(1)
    bce = torch.nn.functional.binary_cross_entropy(p, g)
    dice = (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)
    return bce + 1 - dice.mean()


def test_deep_supervision_is_the_main_loss_plus_weighted_aux_losses():
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    main, aux = torch.randn(2, 1, 8, 8), [torch.randn(2, 1, 8, 8) for _ in range(5)]
    loss = build_loss({"name": "deep_supervision",
                       "loss": {"name": "bce_dice", "bce_weight": 1.0, "dice_weight": 1.0, "per_image": True}})
    expected_aux = sum(w * _official_bce_dice(a, target) for w, a in zip((0.1, 0.2, 0.3, 0.4, 0.5), aux))
    value = loss(main, target, aux=aux)
    assert float(value) == pytest.approx(float(_official_bce_dice(main, target) + expected_aux), rel=1e-5)
    assert float(loss.last_terms["aux"]) == pytest.approx(float(expected_aux), rel=1e-5)
    assert {"bce", "dice", "aux"} <= set(loss.last_terms)
    # without auxiliary outputs (a TTA evaluation): the main term alone
    assert float(loss(main, target)) == pytest.approx(float(_official_bce_dice(main, target)), rel=1e-5)
    with pytest.raises(ValueError, match="gives 2 auxiliary outputs but aux_weights has 5"):
        loss(main, target, aux=aux[:2])
    with pytest.raises(ValueError, match="cannot itself be deep_supervision"):
        build_loss({"name": "deep_supervision", "loss": {"name": "deep_supervision"}})

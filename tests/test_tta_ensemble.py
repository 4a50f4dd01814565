"""Test-time augmentation (6-fold, probability averaging) and the performance-weighted ensemble."""

from __future__ import annotations

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

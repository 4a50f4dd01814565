"""The contract every registered model keeps (as timm's test_models and SMP's base tester): it builds from its
registry entry, runs at its paper's input size and at an odd size, returns logits with the registry's number
of output channels at the input's size, sends a gradient to every parameter, and has the paper's (or the
authors' code's) exact parameter count where one exists. Model-specific checks live in tests/test_model_*.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from lesion_lightning.models import create_model, get_model_spec, list_models
from lesion_lightning.utils.complexity import count_params

from model_checks import one_thread_per_test  # noqa: F401 (autouse fixture: one intra-op thread per test)

# Forward passes at the paper size cost over 20 GMACs on CPU for these: slow suite.
HEAVY = {"unet", "unet3plus", "unetplusplus", "unetplusplus_small"}
ODD_SIZE = (45, 70)  # odd, and no multiple of the 16/32 the encoders divide by
# Parameters that get no gradient or a zero one by design (the name part -> why), checked as such.
NO_GRADIENT = {"scsonet": (".sru.norm.", "SRU's hard gate is not differentiable (as in the official code)")}
ZERO_GRADIENT = {
    "malunet": ("proj_in.bias", "EA's input bias shifts a memory row equally; the softmax cancels it"),
    "slsnet": (".pam.", "PAM's output scale starts at 0 (DANet), so its projections learn once the scale moves"),
}


def _names(heavy_marked: bool) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if heavy_marked and n in HEAVY else n for n in list_models()]


def _built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name)


def _exact_params(paper: dict) -> Iterator[int]:
    if "official_code_params" in paper:
        yield paper["official_code_params"]
    if paper.get("params_exact"):
        yield paper["params"]


@pytest.mark.parametrize("name", _names(heavy_marked=True))
def test_forward_at_the_paper_size(name: str) -> None:
    spec = get_model_spec(name)
    with torch.no_grad():
        out = _built(name).eval()(torch.randn(1, *spec.input_size))
    assert out.shape == (1, spec.num_classes, *spec.input_size[1:])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", _names(heavy_marked=False))
def test_forward_at_an_odd_size(name: str) -> None:
    spec = get_model_spec(name)
    with torch.no_grad():
        out = _built(name).eval()(torch.randn(1, spec.input_size[0], *ODD_SIZE))
    assert out.shape == (1, spec.num_classes, *ODD_SIZE)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", _names(heavy_marked=False))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    net = _built(name).train()
    net(torch.randn(2, get_model_spec(name).input_size[0], 64, 64)).float().square().mean().backward()
    none_part = NO_GRADIENT.get(name, (None,))[0]
    zero_part = ZERO_GRADIENT.get(name, (None,))[0]
    for pname, p in net.named_parameters():
        if none_part and none_part in pname:
            assert p.grad is None, pname
            continue
        assert p.grad is not None, f"{pname} gets no gradient (an unused parameter also breaks DDP)"
        assert torch.isfinite(p.grad).all(), pname
        if not (zero_part and zero_part in pname):
            assert p.grad.abs().sum() > 0, f"{pname} gets a zero gradient"


@pytest.mark.parametrize("name", list_models())
def test_output_channels_follow_num_classes(name: str) -> None:
    spec = get_model_spec(name)
    assert spec.num_classes in (1, 2) and spec.input_size[0] == 3 and spec.preset
    assert not spec.paper or spec.paper.get("source"), f"{name}: paper figures without their source"
    other = 3 - spec.num_classes  # a sigmoid head built as softmax, and the other way round
    torch.manual_seed(0)
    with torch.no_grad():
        out = create_model(name, num_classes=other).eval()(torch.randn(1, 3, 64, 64))
    assert out.shape[1] == other


@pytest.mark.parametrize("name", [n for n in list_models() if list(_exact_params(get_model_spec(n).paper))])
def test_parameter_count_equals_the_exact_published_count(name: str) -> None:
    for expected in _exact_params(get_model_spec(name).paper):
        assert count_params(_built(name)) == expected

"""Atrous spatial pyramid pooling (DeepLab, Chen et al. 2018), configurable for every model that uses it.

LANET uses four 16-channel branches (1x1, 3x3 at dilation 6/12/18, each conv + BN) concatenated
without a projection; DeepLabv3-style heads add an image-pooling branch and a 1x1 projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _branch(
    cin: int, cout: int, kernel: int, dilation: int, norm: bool, activation: type[nn.Module] | None, bias: bool
) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=bias)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class ASPP(nn.Module):
    """Parallel dilated convolutions over the same input, concatenated along channels.

    Args:
        in_channels: channels of the input feature map.
        branch_channels: output channels of every branch.
        dilations: one branch per entry (3x3 conv at that dilation; the first is a 1x1 conv when
            `first_branch_1x1`).
        image_pooling: add a global-average-pool branch (1x1 conv, broadcast back to H x W). With
            `norm`, that branch has BatchNorm on a 1x1 map, so training needs batches of 2 or more.
        branch_projection: if set, each branch (image pooling included) ends with its own 1x1 conv
            (+norm+activation) to this width before the concatenation (MedLiteNet Sec. III-E).
        out_channels: if set, a 1x1 projection (+norm+activation) of the concatenation to this width;
            otherwise the concatenation (`len(dilations) [+1]` x the branch width) is returned.
        norm: BatchNorm after every conv.
        activation: activation class after every conv (+norm); None for none.
        bias: conv bias; default (None) = bias only where no norm follows. LANET passes True
            (MATLAB convolutions keep their bias before BN, and appendix A counts it).
    """

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        dilations: Sequence[int] = (1, 6, 12, 18),
        *,
        first_branch_1x1: bool = True,
        image_pooling: bool = False,
        branch_projection: int | None = None,
        out_channels: int | None = None,
        norm: bool = True,
        activation: type[nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        dilations = tuple(int(d) for d in dilations)
        if not dilations:
            raise ValueError("ASPP needs at least one dilation")
        if any(d < 1 for d in dilations):
            raise ValueError(f"ASPP dilations must be >= 1, got {dilations}")
        use_bias = (not norm) if bias is None else bias
        self.dilations = dilations

        def branch(kernel: int, dilation: int) -> nn.Sequential:
            conv = _branch(in_channels, branch_channels, kernel, dilation, norm, activation, use_bias)
            if branch_projection is None:
                return conv
            return nn.Sequential(*conv, *_branch(branch_channels, branch_projection, 1, 1, norm, activation, use_bias))

        first_1x1 = (1, 1) if first_branch_1x1 else (3, dilations[0])
        self.branches = nn.ModuleList(branch(*(first_1x1 if i == 0 else (3, d))) for i, d in enumerate(dilations))
        self.pool_branch = branch(1, 1) if image_pooling else None
        concat = (branch_projection or branch_channels) * (len(dilations) + int(image_pooling))
        self.project = (
            _branch(concat, out_channels, 1, 1, norm, activation, use_bias) if out_channels is not None else None
        )
        self.out_channels = out_channels if out_channels is not None else concat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [branch(x) for branch in self.branches]
        if self.pool_branch is not None:
            pooled = self.pool_branch(F.adaptive_avg_pool2d(x, 1))
            feats.append(pooled.expand(-1, -1, *x.shape[-2:]))
        out = torch.cat(feats, dim=1)
        return self.project(out) if self.project is not None else out

"""Boundary-aware attention (BAA, MedLiteNet eq. 6-9).

A fixed 3x3 edge filter turns a feature map into a one-channel boundary response B; optionally a
projection of transformer context is added (eq. 7); a 1x1 conv over [F || B] and a sigmoid give a
spatial mask M, and the features are amplified where M is high: F' = F * (1 + M).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BoundaryAwareAttention", "boundary_map", "edge_kernels"]

BoundaryKernel = Literal["laplacian", "sobel"]


def edge_kernels(kind: BoundaryKernel) -> torch.Tensor:
    """Fixed 3x3 edge filters, shape (K, 1, 3, 3): one Laplacian, or the Sobel x/y pair."""
    if kind == "laplacian":
        k = torch.tensor([[[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]]])
    elif kind == "sobel":
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        k = torch.stack([gx, gx.t()])
    else:
        raise ValueError(f"boundary kernel must be 'laplacian' or 'sobel', got {kind!r}")
    return k.unsqueeze(1)


def boundary_map(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) channel-averaged edge magnitude of `x` under the fixed `kernels` (K,1,3,3)."""
    b, c, h, w = x.shape
    k = kernels.to(dtype=x.dtype, device=x.device)
    # Replicate padding: zero padding would report a spurious edge along the image border.
    xp = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    resp = F.conv2d(xp, k)  # (B*C, K, H, W)
    if k.shape[0] == 1:
        mag = resp.abs()
    else:  # gradient magnitude of the Sobel pair
        mag = torch.sqrt(resp.pow(2).sum(dim=1, keepdim=True) + 1e-12)
    return mag.reshape(b, c, h, w).mean(dim=1, keepdim=True)


class BoundaryAwareAttention(nn.Module):
    """F' = F * (1 + sigmoid(Conv1x1([F || B']))) with B' = B + W_g(context) (MedLiteNet eq. 6-9).

    Args:
        channels: channels C of the refined feature map F.
        context_channels: channels of the optional transformer context (eq. 7); None disables it.
        kernel: fixed edge filter: "laplacian" (8-neighbour) or "sobel" (gradient magnitude).
    """

    def __init__(self, channels: int, context_channels: int | None = None, kernel: BoundaryKernel = "laplacian") -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"BoundaryAwareAttention needs channels >= 1, got {channels}")
        # A constant, not a weight: kept out of the state dict and the optimiser.
        self.register_buffer("kernels", edge_kernels(kernel), persistent=False)
        self.kernel = kernel
        self.context_proj = nn.Conv2d(context_channels, 1, 1) if context_channels else None
        self.mask = nn.Conv2d(channels + 1, 1, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        bmap = boundary_map(x, self.kernels)
        if context is not None:
            if self.context_proj is None:
                raise ValueError("this BoundaryAwareAttention was built without context_channels; got a context tensor")
            ctx = self.context_proj(context)
            if ctx.shape[-2:] != x.shape[-2:]:
                ctx = F.interpolate(ctx, size=x.shape[-2:], mode="bilinear", align_corners=False)
            bmap = bmap + ctx
        m = torch.sigmoid(self.mask(torch.cat([x, bmap], dim=1)))
        return x * (1.0 + m)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}"

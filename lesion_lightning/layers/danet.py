"""DANet's self-attention modules (Fu et al., 2019), as SLSNet uses them (Sarker et al., ESWA 2021).

`PAM` (position attention) relates every spatial position to every other one through an N x N softmax
(N = H * W); `CAM` (channel attention) relates channels through a C x C softmax of A A^T. Both keep the
residual of SLSNet's eq. 2 and 4 (`out = scale * attention + x`) with the scale initialised to 0, so a
freshly built module is the identity and the attention is blended in as the scale is learnt.

Cost: PAM's two products are N x N, so its MACs grow with (H * W)^2 — 16x per doubling of the input side.
As executed (fused attention with B, C zero-padded to D's width) they are 2 * N^2 * C MACs; the arithmetic of
the equations is N^2 * (C / reduction + C).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn


class PAM(nn.Module):
    """Position attention module (SLSNet eq. 3-4): 1x1 projections B, C (channels // reduction) and D (channels),
    `S = softmax(B^T C)` over positions, `out = eta * (D S^T) + x`."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"PAM needs channels >= 1 and reduction >= 1, got channels={channels}, reduction={reduction}")
        key_channels = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.eta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C/r)
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, N, C)
        # Zero-padding B and C to D's width leaves B^T C unchanged but lets SDPA use its fused kernels (flash /
        # memory-efficient need equal widths): O(N) memory instead of an N x N matrix, ~10x faster on CPU at N=128^2.
        # DANet applies no 1/sqrt(d) temperature, hence scale=1.
        if q.shape[-1] < c:
            q, k = F.pad(q, (0, c - q.shape[-1])), F.pad(k, (0, c - k.shape[-1]))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        out = out.transpose(1, 2).reshape(b, c, h, w)
        return self.eta * out + x


class CAM(nn.Module):
    """Channel attention module (SLSNet eq. 1-2): `X = softmax(A A^T)` (C x C), `out = gamma * (X A) + x`.

    `inverse_energy=True` uses softmax(max(E) - E) as DANet's released code does (it favours dissimilar
    channels); the default follows the equations of both papers. No parameters besides gamma.
    """

    def __init__(self, inverse_energy: bool = False) -> None:
        super().__init__()
        self.inverse_energy = inverse_energy
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # A A^T sums H*W products per entry: in float16 it overflows at realistic sizes, so run in float32.
        device = x.device.type
        no_autocast = torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext()
        with no_autocast:
            a = x.float().flatten(2)  # (B, C, N)
            energy = torch.bmm(a, a.transpose(1, 2))  # (B, C, C)
            if self.inverse_energy:
                energy = energy.amax(dim=-1, keepdim=True) - energy
            attention = torch.softmax(energy, dim=-1)
            out = torch.bmm(attention, a).reshape(b, c, h, w)
        return self.gamma * out.to(x.dtype) + x

"""DANet's self-attention modules (Fu et al., 2019), as SLSNet uses them (Sarker et al., ESWA 2021).

`PAM` (position attention) relates every spatial position to a set of context positions through a softmax
(SLSNet eq. 3-4); `CAM` (channel attention) relates channels through a C x C softmax of A A^T (eq. 1-2).
Both keep the residual of eq. 2 and 4 (`out = scale * attention + x`) with the scale initialised to 0, so
a freshly built module is the identity and the attention is blended in as the scale is learnt.

Cost (MACs, N = H * W): CAM's two products are 2 * C^2 * N — linear in N, like a convolution. DANet's PAM
attends over all N positions: N^2 * (C / reduction + C), which grows 16x per doubling of the input side.
`PAM(context=k)` attends over the input average-pooled to at most k x k context positions (M <= k^2):
N * M * (C / reduction + C), linear in N again. With H, W <= k nothing is pooled and the module is exactly
DANet's. SLSNet uses k = 8 (see docs/models/slsnet.md for why the paper's MAC figures require it).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn


class PAM(nn.Module):
    """Position attention module (SLSNet eq. 3-4).

    1x1 projections B, C (``channels // reduction``) and D (``channels``); `S = softmax_i(B_j . C_i)`,
    `out_j = eta * sum_i S_ji D_i + x_j`. ``context=None`` (default) is DANet's full N x N attention; an
    int k makes C and D come from the input average-pooled to at most k x k positions (1x1 projections
    commute with average pooling, so this equals pooling the projected maps). DANet applies no 1/sqrt(d)
    temperature, and neither does this module. With ``context=None`` the N x N attention matrix is
    materialised (B * N^2 floats: 1 GiB for one 128 x 128 map), so keep full attention to small maps.
    """

    def __init__(self, channels: int, reduction: int = 8, context: int | None = None) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"PAM needs channels >= 1 and reduction >= 1, got channels={channels}, reduction={reduction}")
        if context is not None and context < 1:
            raise ValueError(f"PAM context must be None (full attention) or a positive grid side, got {context}")
        key_channels = max(1, channels // reduction)
        self.context = context
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.eta = nn.Parameter(torch.zeros(1))

    def context_size(self, h: int, w: int) -> tuple[int, int]:
        """Side lengths of the key/value grid for an (h, w) input."""
        if self.context is None:
            return h, w
        return min(h, self.context), min(w, self.context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ctx = self.context_size(h, w)
        source = x if ctx == (h, w) else F.adaptive_avg_pool2d(x, ctx)
        q = self.query(x).flatten(2)  # (B, C/r, N)
        k = self.key(source).flatten(2)  # (B, C/r, M)
        v = self.value(source).flatten(2)  # (B, C, M)
        attention = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, M), rows sum to 1
        out = torch.bmm(v, attention.transpose(1, 2)).reshape(b, c, h, w)  # (B, C, N)
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

"""CBAM-style attention (Woo et al. 2018) and LANET's pooled-unpooled attention (Khalaf et al. 2026, Alg. 1)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lesion_lightning.layers.conv import same_padding


def pool_unpool_residual(x: torch.Tensor) -> torch.Tensor:
    """R = X - MaxUnpool(MaxPool2x2(X)): every value except the maximum of each 2x2 window.

    Same result as `F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True))` subtracted from x, but
    built from an argmax mask so it is deterministic on CUDA (max_unpool2d is not). Rows/columns
    left over by an odd size are never pooled, so they stay in R unchanged.
    """
    b, c, h, w = x.shape
    h2, w2 = h // 2 * 2, w // 2 * 2
    if h2 == 0 or w2 == 0:
        return x
    core = x[..., :h2, :w2]
    windows = core.reshape(b, c, h2 // 2, 2, w2 // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h2 // 2, w2 // 2, 4)
    # argmax takes the first maximum in row-major window order, as max_pool2d's indices do.
    keep = 1.0 - F.one_hot(windows.argmax(dim=-1), 4).to(x.dtype)
    residual = (windows * keep).reshape(b, c, h2 // 2, w2 // 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h2, w2)
    if (h2, w2) == (h, w):
        return residual
    out = x.clone()
    out[..., :h2, :w2] = residual
    return out


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared MLP over the average- and max-pooled descriptors, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), activation(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(weights)


class SpatialAttention(nn.Module):
    """Spatial attention from the channel-mean and channel-max maps.

    With `kernel_size` set (CBAM: 7), S = sigmoid(conv_kxk([mean, max])); with None the block has no
    parameters and S = sigmoid(mean + max) (the reading of LANET's appendix A, which counts no conv).
    """

    def __init__(self, kernel_size: int | None = 7, bias: bool = True) -> None:
        super().__init__()
        self.conv = (
            nn.Conv2d(2, 1, kernel_size, padding=same_padding(kernel_size), bias=bias) if kernel_size else None
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=1, keepdim=True)
        mx = x.amax(dim=1, keepdim=True)
        if self.conv is None:
            return torch.sigmoid(avg + mx)
        return torch.sigmoid(self.conv(torch.cat([avg, mx], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional block attention module: channel attention then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int | None = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class PooledUnpooledAttention(nn.Module):
    """LANET's pooled-unpooled attention (Algorithm 1).

    R = X - MaxUnpool(MaxPool2x2(X)) keeps what pooling throws away. Channel weights
    w = sigmoid(GAP(MLP(R))), where the MLP is `conv mlp_kernel x mlp_kernel (C->C) -> LeakyReLU ->
    conv 1x1 (C->C)` applied at full resolution before the pooling (appendix A lists these two convs
    with H x W x C activations, so they run on the map, not on the pooled vector). Then
    X_ch = X * w and X_att = X_ch * S with S the spatial attention of X_ch: parameter-free
    sigmoid(mean + max) by default (appendix A counts no spatial conv) or Algorithm 1's
    sigmoid(conv7x7([mean, max])) with `spatial_conv=True` (+99 parameters per block).
    """

    def __init__(
        self,
        channels: int,
        *,
        mlp_kernel: int = 3,
        negative_slope: float = 0.01,
        spatial_conv: bool = False,
        spatial_kernel: int = 7,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels, mlp_kernel, padding=same_padding(mlp_kernel)),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(channels, channels, 1),
        )
        self.spatial = SpatialAttention(spatial_kernel if spatial_conv else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = pool_unpool_residual(x)
        weights = torch.sigmoid(F.adaptive_avg_pool2d(self.mlp(residual), 1))
        x_ch = x * weights
        return self.spatial(x_ch)

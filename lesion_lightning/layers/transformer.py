"""Transformer over the tokens of a feature map, and MedLiteNet's local-global fusion (eq. 3-5).

The transformer layers are timm's pre-norm ViT `Block` (LayerNorm -> MHSA -> residual, LayerNorm ->
FFN -> residual). Positional encodings work at any feature-map size, so a model trained at 256 can
continue at 384 or 512 (progressive resizing): a fixed 2-D sine-cosine code computed per size, or a
learned grid resized by bicubic interpolation.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

__all__ = ["FeatureMapTransformer", "LocalGlobalFusion", "sincos_pos_embed_2d"]

PosEmbed = Literal["sincos", "learned"]


def sincos_pos_embed_2d(height: int, width: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, H*W, dim) fixed 2-D sine-cosine positional code (row-major tokens); dim divisible by 4."""
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine positional encoding needs dim divisible by 4, got {dim}")
    return build_sincos2d_pos_embed([height, width], dim=dim, device=device).unsqueeze(0)


class FeatureMapTransformer(nn.Module):
    """(B,C,H,W) -> (B,d,H,W): tokens, linear projection to d, positional code, `depth` ViT blocks.

    Args:
        in_channels: channels C of the input map (token dimension before projection).
        dim: embedding dimension d.
        depth: number of transformer layers L.
        num_heads: attention heads (dim must be divisible by it).
        mlp_ratio: FFN hidden width as a multiple of dim.
        pos_embed: "sincos" (fixed, parameter-free) or "learned" (a grid of `pos_grid`, interpolated).
        pos_grid: (H, W) of the learned grid; the bottleneck size at the paper's input (256/32 = 8).
        dropout: dropout after attention/FFN projections and on attention weights.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        mlp_ratio: float = 2.0,
        pos_embed: PosEmbed = "sincos",
        pos_grid: tuple[int, int] = (8, 8),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"transformer depth must be >= 1, got {depth}")
        if dim % num_heads:
            raise ValueError(f"transformer dim {dim} is not divisible by num_heads {num_heads}")
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        if pos_embed == "sincos" and dim % 4:
            raise ValueError(f"pos_embed='sincos' needs dim divisible by 4, got {dim}")
        self.dim = dim
        self.pos_embed_kind = pos_embed
        self.proj = nn.Linear(in_channels, dim)
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, dim, *pos_grid))
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_parameter("pos_embed", None)
        self.blocks = nn.Sequential(
            *[
                Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=dropout, attn_drop=dropout)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim)

    def _positions(self, h: int, w: int, x: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is None:
            return sincos_pos_embed_2d(h, w, self.dim, device=x.device).to(x.dtype)
        pe = self.pos_embed
        if pe.shape[-2:] != (h, w):
            pe = F.interpolate(pe, size=(h, w), mode="bicubic", align_corners=False)
        return pe.flatten(2).transpose(1, 2).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = self.proj(x.flatten(2).transpose(1, 2))  # (B, N, d)
        tokens = self.blocks(tokens + self._positions(h, w, tokens))
        return self.norm(tokens).transpose(1, 2).reshape(b, self.dim, h, w)


class LocalGlobalFusion(nn.Module):
    """F_lg = act(W1 [F_conv || F_trans] + b1) + F_conv + F_trans (MedLiteNet eq. 5).

    F_conv is first aligned to the transformer's d channels by a 1x1 conv + BN when its width
    differs, and to F_trans's spatial size by average pooling when it is larger.
    """

    def __init__(self, conv_channels: int, dim: int, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.align = (
            nn.Identity()
            if conv_channels == dim
            else nn.Sequential(nn.Conv2d(conv_channels, dim, 1, bias=False), nn.BatchNorm2d(dim))
        )
        self.fuse = nn.Conv2d(2 * dim, dim, 1)
        self.act = act_layer()

    def forward(self, f_conv: torch.Tensor, f_trans: torch.Tensor) -> torch.Tensor:
        f_conv = self.align(f_conv)
        if f_conv.shape[-2:] != f_trans.shape[-2:]:
            f_conv = F.adaptive_avg_pool2d(f_conv, f_trans.shape[-2:])
        return self.act(self.fuse(torch.cat([f_conv, f_trans], dim=1))) + f_conv + f_trans

"""Patch embedding and the timestep + pooled-text conditioning (diffusers-compatible key names)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of float timesteps, ``(B,) -> (B, dim)`` fp32, order ``[cos, sin]``.

    Frequencies ``exp(-ln(max_period) * i / (dim/2))`` (diffusers ``Timesteps(dim, flip_sin_to_cos=True,
    downscale_freq_shift=0)``).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLPEmbedding(nn.Module):
    """``linear_2(SiLU(linear_1(x)))`` (diffusers ``TimestepEmbedding`` / ``PixArtAlphaTextProjection``)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim_out)
        self.linear_2 = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TimeTextEmbedding(nn.Module):
    """``c = fp32(timestep_embedder(features(t)) + text_embedder(pooled))``: the adaLN conditioning ``(B, Tc)``."""

    def __init__(self, embed_dim: int, pooled_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.timestep_embedder = MLPEmbedding(embed_dim, embed_dim)
        self.text_embedder = MLPEmbedding(pooled_dim, embed_dim)

    def forward(self, timestep: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """timestep ``(B,)`` float (= 1000 sigma), pooled ``(B, P)`` -> ``(B, Tc)`` float32."""
        dtype = self.timestep_embedder.linear_1.weight.dtype
        t_emb = self.timestep_embedder(timestep_features(timestep, self.embed_dim).to(dtype))
        return (t_emb.float() + self.text_embedder(pooled.to(dtype)).float())


class PatchEmbed2D(nn.Module):
    """Per-frame ``Conv2d(C -> D, kernel = stride = p)``: ``(B, C, T, H, W) -> (B, T*(H/p)*(W/p), D)``, (t h w) order."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.proj(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B*T, D, H', W')
        return y.reshape(b, t, y.shape[1], -1).transpose(2, 3).reshape(b, -1, y.shape[1])

"""3D rotary position embedding of the video tokens (rotate-half / NeoX style, base 1e4).

head_dim is split along channels as t : h : w = 4/16 : 6/16 : 6/16 (32 : 48 : 48 at head_dim 128). Each axis
sub-vector of width ``Dx`` is rotated by ``pos * 10000^(-2i/Dx)``, with ``rotate_half`` applied within that
sub-vector. Positions are the integer raster coordinates of the (t, h, w) token grid divided by the
interpolation scale. Tables are built once per grid and cached, never per attention call.
"""
from __future__ import annotations

import torch
from torch import nn


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """``(D_t, D_h, D_w)`` channel widths of the three axes; head_dim must be a multiple of 16."""
    if head_dim % 16:
        raise ValueError(f"head_dim must be a multiple of 16 for the 3D RoPE split, got {head_dim}")
    return head_dim // 16 * 4, head_dim // 16 * 6, head_dim // 16 * 6


class RoPE3D(nn.Module):
    """Holds the cos/sin tables ``(L, head_dim)`` fp32 per (grid, device), and applies them to ``(B, L, H, D)``."""

    def __init__(self, head_dim: int, base: float = 10000.0, interpolation_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
                 ) -> None:  # fmt: skip
        super().__init__()
        self.dims = axis_dims(head_dim)
        self.base = base
        self.interpolation_scale = tuple(float(s) for s in interpolation_scale)
        # Channel index with the two halves of every axis sub-vector swapped: rotate_half without the sign.
        swap, start = [], 0
        for dx in self.dims:
            half = list(range(start, start + dx))
            swap += half[dx // 2 :] + half[: dx // 2]
            start += dx
        self._swap = torch.tensor(swap, device="cpu")  # explicit: models are often built under torch.device("meta")
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin ``(T*H*W, head_dim)`` fp32 for the token grid ``(T, H, W)`` in raster order.

        The sin table carries rotate_half's sign (negative on each axis's first half), so ``apply`` needs one gather
        instead of splits, negations and concatenations.
        """
        key = (tuple(grid), str(device))
        if key not in self._cache:
            coords = torch.cartesian_prod(*(torch.arange(n, dtype=torch.float32, device=device) for n in grid))
            coords = coords.reshape(-1, 3)  # cartesian_prod of 1-element ranges would be 1-D
            cos, sin = [], []
            for axis, (dx, scale) in enumerate(zip(self.dims, self.interpolation_scale)):
                inv_freq = self.base ** (-torch.arange(0, dx, 2, dtype=torch.float32, device=device) / dx)
                freqs = (coords[:, axis] / scale)[:, None] * inv_freq[None]
                emb = torch.cat([freqs, freqs], dim=-1)
                sign = torch.cat([-torch.ones(dx // 2, device=device), torch.ones(dx // 2, device=device)])
                cos.append(emb.cos())
                sin.append(emb.sin() * sign)
            self._cache[key] = (torch.cat(cos, -1), torch.cat(sin, -1))
        return self._cache[key]

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x (B, L, H, head_dim)`` with tables ``(L, head_dim)``; computed in fp32, cast back."""
        xf = x.float()
        swapped = xf.index_select(-1, self._swap.to(x.device))  # each axis's halves exchanged
        return (xf * cos[:, None] + swapped * sin[:, None]).to(x.dtype)

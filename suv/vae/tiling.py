"""Spatial tiling with overlap blending, for frames too large to run in one piece.

Unlike the temporal causal cache this is approximate: a tile does not see the context outside it, so outputs near
tile borders differ from the untiled pass. Overlapping tiles are blended with linear ramps to hide the seams; the
residual error is reported by ``benchmarks/wfvae.py`` as PSNR against the untiled result.
"""

from __future__ import annotations

from typing import Callable

import torch


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets of ``tile``-long windows covering [0, size), neighbours overlapping by at least ``overlap``."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, tile - overlap)) + [size - tile]


def _ramp(length: int, overlap: int, rise: bool, fall: bool) -> torch.Tensor:
    """Blend weights along one axis of a tile: linear ramps over ``overlap`` samples at inner borders, else 1."""
    w = torch.ones(length)
    ramp = (torch.arange(overlap) + 0.5) / overlap
    if rise:
        w[:overlap] = ramp
    if fall:
        w[length - overlap :] = ramp.flip(0)
    return w


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, up: int,
                down: int) -> torch.Tensor:  # fmt: skip
    """Apply ``fn`` to overlapping spatial tiles of x and blend the results.

    x: (B, C, T, H, W). ``fn`` maps a crop (B, C, T, h, w) to (B, C', T', h * up / down, w * up / down).
    ``tile`` and ``overlap`` are in input pixels and multiples of ``down``; returns (B, C', T', H * up / down, ...).
    """
    h, w = x.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    out = weight = None
    for h0 in tile_starts(h, tile, overlap):
        for w0 in tile_starts(w, tile, overlap):
            y = fn(x[..., h0 : h0 + th, w0 : w0 + tw])
            if out is None:
                out = y.new_zeros(*y.shape[:-2], h * up // down, w * up // down)
                weight = torch.zeros(out.shape[-2:], dtype=y.dtype, device=y.device)
            o = overlap * up // down
            wh = _ramp(y.shape[-2], o, rise=h0 > 0, fall=h0 + th < h)
            ww = _ramp(y.shape[-1], o, rise=w0 > 0, fall=w0 + tw < w)
            wmap = torch.outer(wh, ww).to(y)
            rows = slice(h0 * up // down, h0 * up // down + y.shape[-2])
            cols = slice(w0 * up // down, w0 * up // down + y.shape[-1])
            out[..., rows, cols] += y * wmap
            weight[rows, cols] += wmap
    return out.div_(weight)

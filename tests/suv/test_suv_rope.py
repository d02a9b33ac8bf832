"""3D RoPE: the 32/48/48 split, rotate-half pairs, base 1e4, relative-position property, table caching."""
from __future__ import annotations

import math

import pytest
import torch

from suv.models.rope import RoPE3D, axis_dims


def naive_rope(x: torch.Tensor, pos: tuple[int, int, int], head_dim: int) -> torch.Tensor:
    """Rotate channel pairs (j, j + Dx/2) of each axis sub-vector by pos_axis * 10000^(-2j/Dx), one vector."""
    out, start = x.clone(), 0
    for axis, dx in enumerate((head_dim // 4, head_dim * 3 // 8, head_dim * 3 // 8)):
        for j in range(dx // 2):
            a = pos[axis] * 10000.0 ** (-2 * j / dx)
            u, w = x[start + j].item(), x[start + j + dx // 2].item()
            out[start + j] = u * math.cos(a) - w * math.sin(a)
            out[start + j + dx // 2] = w * math.cos(a) + u * math.sin(a)
        start += dx
    return out


def test_axis_split_of_the_released_head_dim():
    assert axis_dims(128) == (32, 48, 48)
    with pytest.raises(ValueError, match="multiple of 16"):
        axis_dims(72)


def test_matches_naive_pair_rotation_in_raster_order():
    rope, grid, hd = RoPE3D(32), (2, 3, 4), 32
    x = torch.randn(1, 24, 1, hd, dtype=torch.float64)
    cos, sin = rope.tables(grid, torch.device("cpu"))
    got = rope.apply(x, cos.double(), sin.double())
    for n in range(24):
        pos = (n // 12, (n // 4) % 3, n % 4)
        torch.testing.assert_close(got[0, n, 0], naive_rope(x[0, n, 0], pos, hd))


def test_scores_depend_only_on_relative_position_and_norm_is_kept():
    rope = RoPE3D(16)
    cos, sin = rope.tables((3, 3, 3), torch.device("cpu"))
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    L = 27
    rq = rope.apply(q.expand(1, L, 1, 16), cos.double(), sin.double())[0, :, 0]
    rk = rope.apply(k.expand(1, L, 1, 16), cos.double(), sin.double())[0, :, 0]
    idx = lambda t, h, w: t * 9 + h * 3 + w  # noqa: E731
    # (1,1,1)-(0,0,0) and (2,2,2)-(1,1,1) have the same offset, so the same score.
    torch.testing.assert_close(rq[idx(1, 1, 1)] @ rk[idx(0, 0, 0)], rq[idx(2, 2, 2)] @ rk[idx(1, 1, 1)])
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(L))
    torch.testing.assert_close(rq[0], q)  # position (0, 0, 0) is not rotated


def test_tables_are_cached_per_grid_and_cast_back():
    rope = RoPE3D(16)
    a = rope.tables((1, 2, 2), torch.device("cpu"))
    assert rope.tables((1, 2, 2), torch.device("cpu"))[0] is a[0]
    assert rope.tables((1, 2, 3), torch.device("cpu"))[0].shape == (6, 16)
    x = torch.randn(2, 4, 3, 16, dtype=torch.bfloat16)
    assert rope.apply(x, *a).dtype == torch.bfloat16

"""Skiparse index math (the Python twin of ``csrc/skiparse/index.h``).

Natural token ``i`` (raster order t, h, w) of a length-``L`` sequence is padded to ``Lp = ceil(L / k^2) * k^2``
and sent to sub-sequence ``s`` at position ``r``:

- single-skip: ``i = r*k + s``                  -> s = i % k,        r = i // k
- group-skip:  ``i = n*k^2 + s*k + j, r = n*k + j`` -> s = (i // k) % k, r = (i // k^2) * k + i % k

Every sub-sequence has ``Lp / k`` positions; positions whose natural index is ``>= L`` are padding.

A sub-sequence is also a union of *lanes*: arithmetic progressions of natural rows
(single-skip: one lane of stride k; group-skip: k lanes of stride k^2). Kernels walk lanes so that each tile
of rows is one strided view of the tensor, with no gather and no padded rows.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


def padded_length(length: int, sparsity: int) -> int:
    """``L`` rounded up to a multiple of ``k^2`` (both patterns pad to k^2, as upstream does)."""
    kk = sparsity * sparsity
    return -(-length // kk) * kk


def sub_length(length: int, sparsity: int) -> int:
    """Positions per sub-sequence, padding included: ``padded_length / k``."""
    return padded_length(length, sparsity) // sparsity


def natural_index(sub: int, pos: int, sparsity: int, group: bool) -> int:
    """Natural (padded) row of position ``pos`` of sub-sequence ``sub``."""
    k = sparsity
    if group:
        return (pos // k) * k * k + sub * k + pos % k
    return pos * k + sub


def sub_and_pos(i: int, sparsity: int, group: bool) -> tuple[int, int]:
    """Inverse of :func:`natural_index`: (sub-sequence, position) of natural row ``i``."""
    k = sparsity
    if group:
        return (i // k) % k, (i // (k * k)) * k + i % k
    return i % k, i // k


class Lane(NamedTuple):
    """Natural rows ``start + n*stride`` for ``n < count`` (all ``< L``); ``pos0 + n*pos_stride`` are their positions."""

    start: int
    stride: int
    count: int
    pos0: int
    pos_stride: int


def lanes(sub: int, length: int, sparsity: int, group: bool) -> list[Lane]:
    """The lanes of sub-sequence ``sub``; rows past ``length`` (padding) are simply absent."""
    k = sparsity
    if group:
        starts = [(sub * k + j, k * k, j, k) for j in range(k)]
    else:
        starts = [(sub, k, 0, 1)]
    return [Lane(s, st, max(0, -(-(length - s) // st)), p0, ps) for s, st, p0, ps in starts]


def sub_count(sub: int, length: int, sparsity: int, group: bool) -> int:
    """Real (non-padding) rows of sub-sequence ``sub``."""
    return sum(lane.count for lane in lanes(sub, length, sparsity, group))


def index_table(length: int, sparsity: int, group: bool, device=None) -> torch.Tensor:
    """``(k, Lp/k)`` int64 table of natural rows per (sub-sequence, position); ``-1`` marks padding."""
    k = sparsity
    table = torch.full((k, sub_length(length, k)), -1, dtype=torch.int64)
    for s in range(k):
        for lane in lanes(s, length, k, group):
            n = torch.arange(lane.count)
            table[s, lane.pos0 + n * lane.pos_stride] = lane.start + n * lane.stride
    return table.to(device) if device is not None else table

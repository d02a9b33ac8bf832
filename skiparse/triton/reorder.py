"""Fused Skiparse reorder / restore: one strided copy each, padding handled by bounds, never materialised.

Both kernels walk the sub-sequence layout: grid ``(position tiles, k*B, feature tiles)``, program ``(t, s*B + b, c)``
copies positions ``t*BLOCK_L ...`` of sub-sequence ``s`` of batch item ``b`` (features ``c*BLOCK_C ...``) to or
from their natural rows (``natural_row``). The trailing features are one contiguous block of ``C = prod(F)``
elements; the (batch, row) strides of the input are free, so views are read in place.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..index import sub_length
from . import configs
from .index import natural_row


@triton.jit
def _tile(B, sparsity, GROUP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's sub-sequence batch index ``s*B + b``, batch item ``b`` (both int64), positions, natural rows
    (int64: ``row * stride`` may pass 2^31) and feature columns."""
    sb = tl.program_id(1)
    pos = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    row = natural_row(pos, sb // B, sparsity, GROUP).to(tl.int64)
    col = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    return sb.to(tl.int64), (sb % B).to(tl.int64), pos.to(tl.int64), row, col


@triton.jit
def reorder_kernel(
    X, Y,  # X (B, L, C) with contiguous features; Y (k*B, SUB, C)
    L, SUB, B, sparsity, C,
    sx_b, sx_l, sy_b, sy_l,
    GROUP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``Y[s*B + b, pos] = X[b, natural_row(pos, s)]``, zero where that row is padding (``>= L``)."""
    sb, b, pos, row, col = _tile(B, sparsity, GROUP, BLOCK_L, BLOCK_C)
    col_ok = col[None, :] < C
    vals = tl.load(X + b * sx_b + row[:, None] * sx_l + col[None, :], mask=(row < L)[:, None] & col_ok, other=0)
    tl.store(Y + sb * sy_b + pos[:, None] * sy_l + col[None, :], vals, mask=(pos < SUB)[:, None] & col_ok)


@triton.jit
def restore_kernel(
    X, Y,  # X (k*B, SUB, C) with contiguous features; Y (B, L, C)
    L, SUB, B, sparsity, C,
    sx_b, sx_l, sy_b, sy_l,
    GROUP: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``Y[b, natural_row(pos, s)] = X[s*B + b, pos]`` for the rows ``< L``; padding positions are dropped."""
    sb, b, pos, row, col = _tile(B, sparsity, GROUP, BLOCK_L, BLOCK_C)
    # row < L implies pos < SUB: positions past SUB map to rows >= Lp (SUB is a multiple of k).
    ok = (row < L)[:, None] & (col[None, :] < C)
    vals = tl.load(X + sb * sx_b + pos[:, None] * sx_l + col[None, :], mask=ok)
    tl.store(Y + b * sy_b + row[:, None] * sy_l + col[None, :], vals, mask=ok)


# A memory-bound copy: tiles of 16-32 KiB (bf16) that give each thread 16-byte vector accesses along the features.
CONFIGS = {
    80: [configs.cfg(4, 1, BLOCK_L=32, BLOCK_C=256), configs.cfg(8, 1, BLOCK_L=64, BLOCK_C=256),
         configs.cfg(4, 1, BLOCK_L=16, BLOCK_C=512), configs.cfg(8, 1, BLOCK_L=16, BLOCK_C=1024)],
    90: [configs.cfg(4, 1, BLOCK_L=32, BLOCK_C=256), configs.cfg(8, 1, BLOCK_L=64, BLOCK_C=256),
         configs.cfg(8, 1, BLOCK_L=32, BLOCK_C=512), configs.cfg(8, 1, BLOCK_L=16, BLOCK_C=1024)],
}
INTERPRETER = configs.cfg(1, 1, BLOCK_L=4, BLOCK_C=16)
_KEY = ["C", "GROUP"]

_reorder = triton.autotune(configs.pick(CONFIGS, INTERPRETER), key=_KEY)(reorder_kernel)
_restore = triton.autotune(configs.pick(CONFIGS, INTERPRETER), key=_KEY)(restore_kernel)


def _features_contiguous(x: torch.Tensor) -> torch.Tensor:
    """``x`` if its trailing features (dims 2...) are one contiguous block, else a contiguous copy."""
    return x if x[0, 0].is_contiguous() else x.contiguous()


def _launch(kernel, x: torch.Tensor, y: torch.Tensor, length: int, sparsity: int, group: bool, batch: int) -> None:
    """Run ``kernel`` over every (position tile, sub-sequence batch index, feature tile); ``length`` is L."""
    C = math.prod(x.shape[2:])
    SUB = sub_length(length, sparsity)

    def grid(meta):
        return triton.cdiv(SUB, meta["BLOCK_L"]), sparsity * batch, triton.cdiv(C, meta["BLOCK_C"])

    kernel[grid](x, y, length, SUB, batch, sparsity, C, x.stride(0), x.stride(1), y.stride(0), y.stride(1),
                 GROUP=group)


def reorder(x: torch.Tensor, sparsity: int, group: bool) -> torch.Tensor:
    """``torch.ops.skiparse.reorder`` on Triton: ``x (B, L, *F) -> (k*B, Lp/k, *F)``, padding rows zero."""
    B, L = x.shape[:2]
    y = x.new_empty((sparsity * B, sub_length(L, sparsity), *x.shape[2:]))
    if y.numel():  # an empty grid is not launchable
        _launch(_reorder, _features_contiguous(x), y, L, sparsity, group, B)
    return y


def restore(x: torch.Tensor, sparsity: int, group: bool, length: int) -> torch.Tensor:
    """``torch.ops.skiparse.restore`` on Triton: ``x (k*B, Lp/k, *F) -> (B, length, *F)``, padding rows dropped."""
    B = x.shape[0] // sparsity
    y = x.new_empty((B, length, *x.shape[2:]))
    if y.numel():
        _launch(_restore, _features_contiguous(x), y, length, sparsity, group, B)
    return y


def aot_specs() -> list[configs.KernelSpec]:
    """Both kernels, single- and group-skip, with bf16 data (a copy compiles the same for every 16-bit type)."""
    specs = []
    for fn in (reorder_kernel, restore_kernel):
        sig = configs.signature(fn, "bf16", data=("X", "Y"))
        # C = H * D is a multiple of 16 in real use, as are the strides: vectorised, masked per 16 columns.
        aligned = (*configs.strides(fn), "C")
        for group in (False, True):
            name = f"{fn.__name__.removesuffix('_kernel')} {'group' if group else 'single'}"
            specs.append(configs.KernelSpec(name, fn, sig, {"GROUP": group}, CONFIGS, aligned))
    return specs

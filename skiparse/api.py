"""Public functions: validate, pick the backend, call the op (or the reference)."""
from __future__ import annotations

import torch

from . import _validate, ops, reference  # noqa: F401  (ops defines torch.ops.skiparse)
from .backends import resolve
from .backends.cpu import native_low_precision


def skiparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sparsity: int = 4,
    group: bool = False,
    text_q: torch.Tensor | None = None,
    text_k: torch.Tensor | None = None,
    text_v: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    video_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Skiparse joint attention, exactly as Open-Sora Plan v1.5 computes it.

    The video sequence is split into ``k = sparsity`` sub-sequences (single-skip: token ``i`` goes to
    ``i % k``; group-skip: to ``(i // k) % k``), each padded sub-sequence attends jointly with all text tokens
    (order ``[video | text]``, padded and masked keys excluded), and each text token's output is the mean of its
    ``k`` copies. ``k = 1`` is dense joint attention.

    Args:
        q, k, v: ``(B, L, H, D)`` video tokens in natural ``(t, h, w)`` raster order, RoPE already applied.
        sparsity: ``k >= 1``.
        group: ``False`` single-skip, ``True`` group-skip.
        text_q, text_k, text_v: ``(B, T, H, D)`` joint text tokens, all three or none.
        text_mask: ``(B, T)`` bool, ``True`` = real token; ``False`` keys are masked.
        video_mask: ``(B, L)`` bool, ``True`` = keep; ``False`` keys are masked.
        scale: softmax scale, default ``1/sqrt(D)``.

    Returns:
        ``out (B, L, H, D)`` and ``text_out (B, T, H, D)`` (``None`` without text). Queries whose keys are all
        masked get zeros.

    Examples::

        >>> q = k = v = torch.randn(1, 97, 2, 64)
        >>> out, _ = skiparse.skiparse_attention(q, k, v, sparsity=4, group=True)
    """
    scale = _validate.attention(q, k, v, sparsity, group, text_q, text_k, text_v, text_mask, video_mask, scale)
    if resolve(q.device) == "reference":
        return reference.skiparse_attention(
            q, k, v, sparsity, group, text_q, text_k, text_v, text_mask, video_mask, scale
        )
    out, text_out, *_ = torch.ops.skiparse.attention(
        q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale
    )
    return out, (text_out if text_q is not None else None)


def reorder(x: torch.Tensor, sparsity: int = 4, group: bool = False) -> torch.Tensor:
    """``(B, L, ...) -> (k*B, Lp/k, ...)``: the Skiparse sub-sequences, zero rows for padding.

    ``Lp`` is ``L`` rounded up to a multiple of ``k^2``; sub-sequence ``s`` of batch item ``b`` is row ``s*B + b``.
    """
    _validate.reorder(x, sparsity, group)
    if resolve(x.device) == "reference":
        return reference.reorder(x, sparsity, group)
    return torch.ops.skiparse.reorder(x, sparsity, group)


def restore(x: torch.Tensor, sparsity: int = 4, group: bool = False, *, length: int) -> torch.Tensor:
    """``(k*B, Lp/k, ...) -> (B, length, ...)``: the exact inverse of :func:`reorder` (padding rows dropped)."""
    _validate.restore(x, sparsity, group, length)
    if resolve(x.device) == "reference":
        return reference.restore(x, sparsity, group, length)
    return torch.ops.skiparse.restore(x, sparsity, group, length)


def conv3d_3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
               context: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """``F.conv3d(x, weight, bias, padding=(0, 1, 1))`` for 3x3 spatial kernels, Winograd F(4x4, 3x3) on the CPU.

    Args:
        x: ``(B, C_in, T, H, W)``; channels-last (``torch.channels_last_3d``) avoids a copy on the CPU.
        weight: ``(C_out, C_in, kt, 3, 3)``, any temporal size ``kt <= Tc + T`` (``kt = 1`` is a per-frame 2D conv).
        bias: ``(C_out,)`` or ``None``.
        context: ``(B, C_in, Tc, H, W)`` frames that come before x, or ``None``: the conv then runs over
            ``cat([context, x], dim=2)``, which the CPU kernel never materialises (a causal conv's padding or
            cached frames cost no copy of its input).

    Returns:
        ``(B, C_out, Tc + T - kt + 1, H, W)``, channels-last from the CPU kernel. Stride 1, zero padding 1 in space
        and none in time. The CPU backend computes float32/float64 with 4x fewer multiplies than a direct conv
        (rounding differs from it by ~1e-6 relative in float32); bf16/fp16 run oneDNN's conv where the CPU has
        native bf16/fp16 (AMX), else the Winograd kernel on float32 copies; other devices run ``F.conv3d``.
    """
    _validate.conv3d_3x3(x, weight, bias, context)
    frames = x.shape[2] + (0 if context is None else context.shape[2])
    if (x.device.type != "cpu" or resolve(x.device) != "cpu"
            or not winograd_serves((*x.shape[:2], frames, *x.shape[3:]), weight.shape, x.dtype)):  # fmt: skip
        return reference.conv3d_3x3(x, weight, bias, context)
    if x.dtype in (torch.float32, torch.float64):
        return torch.ops.skiparse.conv3d_3x3(x, weight, bias, context)
    f32 = [None if t is None else t.float() for t in (x, weight, bias, context)]
    return torch.ops.skiparse.conv3d_3x3(*f32).to(x.dtype)


# Below this many output pixels the weight transform (36 values per 3x3 filter, written once per call) costs more
# than the multiplies Winograd saves: measured on 2 cores, 640 -> 640 channels (kt 1 or 3) runs 1.6x of F.conv3d
# for one 32x32 frame and 0.6x for one 16x16 frame.
_WINOGRAD_MIN_PIXELS = 1024


def winograd_serves(x_shape: tuple[int, ...], weight_shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    """Whether ``conv3d_3x3`` on the CPU backend runs the Winograd kernel (else ``F.conv3d``): for a large enough
    conv (``winograd_pays_off``), in float32/float64, and in bf16/fp16 (on float32 copies) only where the CPU has no
    native bf16/fp16. With it, oneDNN's bf16 conv on AMX is 3-7x faster than Winograd in float32; without it,
    oneDNN emulates the conv 270-700x slower."""
    return winograd_pays_off(x_shape, weight_shape) and not native_low_precision(dtype)


def winograd_pays_off(x_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> bool:
    """Whether ``conv3d_3x3`` of x (B, C_in, T, H, W) and weight (C_out, C_in, kt, 3, 3) is large enough for the
    CPU's Winograd kernel: at least ``_WINOGRAD_MIN_PIXELS`` output pixels."""
    batch, _, frames, height, width = x_shape
    return batch * (frames - weight_shape[2] + 1) * height * width >= _WINOGRAD_MIN_PIXELS

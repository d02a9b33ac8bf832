"""Argument checks of the public API: clear ``TypeError``/``ValueError`` naming the argument, never a crash in a kernel."""
from __future__ import annotations

import math

import torch

from .index import padded_length, sub_length

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INT64_MAX = 2**63 - 1


def sparsity(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"sparsity must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"sparsity must be an int >= 1, got {value}")
    return value


def padded(name: str, shape: tuple[int, ...], k: int) -> None:
    """``name`` (shape (B, L, ...)) padded along dim 1 to a multiple of ``k^2`` must be representable: the kernels
    index it in int64, and ``k^2`` overflowing to 0 would divide by zero."""
    length = padded_length(shape[1], k)
    if max(k * k, length, length * math.prod(shape[:1] + shape[2:])) > _INT64_MAX:
        raise ValueError(f"sparsity={k} is too large for {name} of shape {tuple(shape)}: {name} padded along dim 1 "
                         "to a multiple of sparsity^2 would have more than 2^63 - 1 elements")  # fmt: skip


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def tensor(name: str, value, ndim: int | None = None, min_ndim: int | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims (B, L, ...), got shape {tuple(value.shape)}")
    return value


def _same(name: str, t: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; all inputs must share one dtype")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; all inputs must share one device")


def _mask(name: str, mask, shape: tuple[int, ...], ref: torch.Tensor, what: str) -> None:
    if mask is None:
        return
    tensor(name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = {what}), got {mask.dtype}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")
    if mask.device != ref.device:
        raise ValueError(f"{name} is on {mask.device} but q is on {ref.device}")


def attention(q, k, v, sparsity_, group, text_q, text_k, text_v, text_mask, video_mask, scale) -> float:
    """Checks every argument of ``skiparse_attention``; returns the softmax scale to use."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        tensor(name, t, ndim=4)
    if q.dtype not in _FLOATS:
        raise TypeError(f"q must be a floating tensor ({', '.join(map(str, _FLOATS))}), got {q.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"{name} must have the shape of q (B, L, H, D) = {tuple(q.shape)}, got {tuple(t.shape)}")
        _same(name, t, q, "q")
    B, L, H, D = q.shape
    if L < 1 or D < 1 or B < 1 or H < 1:
        raise ValueError(f"q must be a non-empty (B, L, H, D) tensor, got shape {tuple(q.shape)}")
    padded("q", tuple(q.shape), sparsity(sparsity_))
    flag("group", group)
    texts = {"text_q": text_q, "text_k": text_k, "text_v": text_v}
    given = [n for n, t in texts.items() if t is not None]
    if given and len(given) != 3:
        missing = [n for n in texts if n not in given]
        raise ValueError(f"text_q, text_k and text_v go together: got {', '.join(given)} without {', '.join(missing)}")
    if given:
        for name, t in texts.items():
            tensor(name, t, ndim=4)
            if t.shape[0] != B or t.shape[2] != H or t.shape[3] != D or t.shape[1] < 1:
                raise ValueError(
                    f"{name} must have shape (B, T, H, D) = ({B}, T>=1, {H}, {D}) to match q, got {tuple(t.shape)}"
                )
            if t.shape != text_q.shape:
                raise ValueError(f"{name} must have the shape of text_q {tuple(text_q.shape)}, got {tuple(t.shape)}")
            _same(name, t, q, "q")
        _mask("text_mask", text_mask, (B, text_q.shape[1]), q, "real token")
    elif text_mask is not None:
        raise ValueError("text_mask was given without text_q, text_k, text_v")
    _mask("video_mask", video_mask, (B, L), q, "keep")
    if scale is None:
        return 1.0 / math.sqrt(D)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise TypeError(f"scale must be a finite float or None, got {scale!r}")
    return float(scale)


def reorder(x, sparsity_, group) -> None:
    tensor("x", x, min_ndim=2)
    k = sparsity(sparsity_)
    flag("group", group)
    if x.shape[1] < 1:
        raise ValueError(f"x must have a non-empty sequence dim 1, got shape {tuple(x.shape)}")
    padded("x", tuple(x.shape), k)


def restore(x, sparsity_, group, length) -> None:
    tensor("x", x, min_ndim=2)
    k = sparsity(sparsity_)
    flag("group", group)
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise TypeError(f"length must be an int >= 1 (the original sequence length), got {length!r}")
    if x.shape[0] % k:
        raise ValueError(f"x dim 0 must be k*B with k = sparsity = {k}, got {x.shape[0]}")
    if x.shape[1] != sub_length(length, k):
        raise ValueError(
            f"length={length} does not match x: a sequence of length {length} padded to a multiple of "
            f"k^2={k * k} has {sub_length(length, k)} rows per sub-sequence, but x.shape[1] = {x.shape[1]}"
        )


def conv3d_3x3(x, weight, bias, context=None) -> None:
    tensor("x", x, ndim=5)
    tensor("weight", weight, ndim=5)
    if x.dtype not in _FLOATS:
        raise TypeError(f"x must be a floating tensor, got {x.dtype}")
    _same("weight", weight, x, "x")
    if x.shape[1] < 1:
        raise ValueError(f"x must have at least one channel (B, C_in >= 1, T, H, W), got shape {tuple(x.shape)}")
    if weight.shape[3:] != (3, 3) or weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must be (C_out, C_in={x.shape[1]}, kt, 3, 3), got shape {tuple(weight.shape)}")
    frames = x.shape[2]
    if context is not None:
        tensor("context", context, ndim=5)
        _same("context", context, x, "x")
        b, c, _, h, w = x.shape
        if (context.shape[0], context.shape[1], *context.shape[3:]) != (b, c, h, w):
            raise ValueError(f"context must be (B={b}, C_in={c}, Tc, H={h}, W={w}), the frames before x; "
                             f"got shape {tuple(context.shape)}")  # fmt: skip
        frames += context.shape[2]
    if not 1 <= weight.shape[2] <= frames:
        raise ValueError(f"weight's temporal size kt={weight.shape[2]} must be in 1..T={frames} "
                         "(the frames of context and x)")  # fmt: skip
    if bias is not None:
        tensor("bias", bias, ndim=1)
        _same("bias", bias, x, "x")
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must be (C_out={weight.shape[0]},), got shape {tuple(bias.shape)}")

"""Launchers of the Triton attention kernels, with the signatures of ``torch.ops.skiparse.attention`` and
``attention_backward`` (see ``skiparse/ops.py``): CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.

Inputs are read through their strides (only the head dimension must be contiguous), so the views a model passes
(chunks of a fused QKV projection, say) are never copied.
"""
from __future__ import annotations

import torch
import triton

from ..index import sub_length
from .attention_bwd import DELTA_CONFIG, attention_bwd_dkdv, attention_bwd_dq, row_delta_kernel
from .attention_fwd import attention_fwd
from . import configs, reorder

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LOG2E = 1.4426950408889634


def _check(q: torch.Tensor) -> None:
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"skiparse triton backend: q has dtype {q.dtype}; expected float16, bfloat16 or float32 "
            "(use the 'reference' backend for other dtypes)"
        )
    if q.shape[-1] > 256:
        raise ValueError(f"skiparse triton backend: head dim {q.shape[-1]} is larger than the supported 256")


def _unit_stride(*xs: torch.Tensor):
    """The tensors with a unit stride on the head dimension (a copy only for those that have none)."""
    return tuple(x if x.stride(-1) == 1 else x.contiguous() for x in xs)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs follow torch's TF32 switch, as torch's own matmuls do; 16-bit inputs use their native MMA.
    return "tf32" if dtype != torch.float32 or torch.backends.cuda.matmul.allow_tf32 else "ieee"


class _Problem:
    """Shapes, pointers (with text stand-ins when there is no text) and the launch arguments shared by kernels."""

    def __init__(self, q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale):
        _check(q)
        self.B, self.L, self.H, self.D = q.shape
        self.T = 0 if text_q is None else text_q.shape[1]
        self.k, self.group, self.scale = sparsity, group, scale
        self.SUB = sub_length(self.L, sparsity)
        if text_q is None:  # T = 0: the text loops run no iteration, any pointer will do
            text_q = text_k = text_v = q
        self.tensors = _unit_stride(q, k, v, text_q, text_k, text_v)
        # Row offsets are 32-bit inside the kernels (64-bit ones cost registers the D = 128 tiles do not have).
        span = max(max(x.shape[1] * x.stride(1) for x in self.tensors), self.L * self.H * self.D)
        if span >= 2**31:
            raise ValueError(
                f"skiparse triton backend: a sequence spans {span:,} elements (rows x row stride); the kernels "
                "address rows with 32-bit offsets, so it must stay below 2^31 (split the batch or the sequence)"
            )
        # Every kernel reads key masks as fp32 score caps (+inf keep, -inf masked), the video mask in position order
        # (B, k, SUB): a contiguous run per key tile, whatever the layout of the mask passed. B x (L + T) x 4 bytes,
        # built once per call. A missing mask is a never-read stand-in.
        caps = [None if m is None else torch.where(m, torch.inf, -torch.inf).float().contiguous()
                for m in (text_mask, video_mask)]
        if video_mask is not None:
            by_position = reorder.reorder(caps[1], sparsity, group).view(sparsity, self.B, self.SUB)
            caps[1] = by_position.transpose(0, 1).contiguous()
        self.caps = tuple(c if c is not None else self.stats(1) for c in caps)
        self.flags = dict(
            HEAD_DIM=self.D, BLOCK_D=max(16, triton.next_power_of_2(self.D)), GROUP=group,
            HAS_TMASK=text_mask is not None, HAS_VMASK=video_mask is not None, PRECISION=_precision(q.dtype),
        )

    def sizes_and_strides(self):
        strides = [s for x in self.tensors for s in (x.stride(0), x.stride(1), x.stride(2))]
        return (self.L, self.T, self.SUB, self.k, self.H, *strides)

    def launch(self, tuned: dict, block: str, switch: str, *args) -> None:
        """Run an autotuned kernel over the video rows, then (with text) over the text rows of every sub-sequence."""
        kernel = tuned[configs.head_dim_class(self.D)]
        for text, rows in ((False, self.SUB), (True, self.T)):
            if rows:
                grid = lambda meta, rows=rows: (triton.cdiv(rows, meta[block]), self.H, self.B * self.k)  # noqa: E731
                kernel[grid](*args, *self.sizes_and_strides(), **self.flags, **{switch: text})

    def stats(self, *shape):
        return torch.empty(shape, device=self.tensors[0].device, dtype=torch.float32)


def forward(q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale):
    """``torch.ops.skiparse.attention`` on Triton: ``(out, text_out, lse, text_parts, text_lse)``."""
    if scale <= 0:  # the kernel folds a positive scale into its running maximum: flip (or zero) the queries instead
        sign = -1.0 if scale < 0 else 0.0
        q, text_q = q * sign, None if text_q is None else text_q * sign
    p = _Problem(q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale)
    B, L, H, D, T = p.B, p.L, p.H, p.D, p.T
    out = q.new_empty((B, L, H, D))
    lse, text_parts, text_lse = p.stats(B, H, L), p.stats(B, sparsity, T, H, D), p.stats(B, H, sparsity, T)
    p.launch(attention_fwd, "BLOCK_M", "TEXT_QUERIES", *p.tensors, *p.caps, out, lse, text_parts, text_lse,
             (abs(scale) or 1.0) * _LOG2E)
    text_out = text_parts.mean(1).to(q.dtype)
    return out, text_out, lse, text_parts, text_lse


def _row_delta(d_out, out, scale, S):
    """``(B, H, S, N)`` fp32 ``scale * rowsum(d_out * out)`` for ``d_out (B, N, H, D)``, ``out (B, S, N, H, D)``."""
    B, N, H, D = d_out.shape
    delta = torch.empty((B, H, S, N), device=d_out.device, dtype=torch.float32)
    if delta.numel() == 0:
        return delta
    config = configs.cfg(4, 1, BLOCK_M=16) if configs.interpreting() else DELTA_CONFIG
    grid = (triton.cdiv(N, config.kwargs["BLOCK_M"]), H, B * S)
    row_delta_kernel[grid](
        d_out, out, delta, scale, N, H, S, HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)),
        num_warps=config.num_warps, num_stages=config.num_stages, **config.kwargs,
    )
    return delta


def backward(dout, dtext_out, q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale,
             out, lse, text_parts, text_lse):
    """``torch.ops.skiparse.attention_backward`` on Triton: ``(dq, dk, dv, dtext_q, dtext_k, dtext_v)``."""
    p = _Problem(q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale)
    B, L, H, D, T = p.B, p.L, p.H, p.D, p.T
    dout, dtext_out = dout.contiguous(), dtext_out.contiguous()
    delta = _row_delta(dout, out, 1.0, 1)
    text_delta = _row_delta(dtext_out, text_parts, 1.0 / sparsity, sparsity)
    dq, dk, dv = (x.new_empty((B, L, H, D)) for x in (q, k, v))
    dtq, dtk, dtv = (p.stats(B, sparsity, T, H, D) for _ in range(3))
    common = (*p.tensors, *p.caps, dout, dtext_out, lse, text_lse, delta, text_delta)
    scales = (scale, scale * _LOG2E, 1.0 / sparsity)
    p.launch(attention_bwd_dkdv, "BLOCK_N", "TEXT_KEYS", *common, dk, dv, dtk, dtv, *scales)
    p.launch(attention_bwd_dq, "BLOCK_M", "TEXT_QUERIES", *common, dq, dtq, *scales)
    # Each text token got one gradient per sub-sequence copy: the reference's repeat sums them.
    dtext = [x.sum(1).to(q.dtype) for x in (dtq, dtk, dtv)]
    return (dq, dk, dv, *dtext)

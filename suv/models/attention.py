"""Joint video/text attention of one SUV block (reference ``MultiHeadSparseMMAttention``), through skiparse."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import skiparse

from ..parallel import head_shard_attention, sum_grad_over_group, tokens_to_heads
from .layers import RMSNorm


@dataclass(frozen=True)
class AttentionContext:
    """What every attention call of one forward shares; built once per forward by ``SparseUMMDiT``.

    cos, sin: RoPE tables ``(L, head_dim)`` fp32 (under sequence parallelism: this rank's ``L / W`` rows).
    text_mask ``(B, T)`` / video_mask ``(B, L)`` bool, True = real key, or None when nothing is masked (skiparse then
    needs no mask at all); the video mask always covers the whole sequence (attention sees all ``L`` keys).
    sp_group: the process group the video tokens are split over, or None (see ``suv.parallel.sequence``).
    """

    cos: torch.Tensor
    sin: torch.Tensor
    rope: nn.Module
    text_mask: torch.Tensor | None
    video_mask: torch.Tensor | None
    sp_group: Any = None


class JointAttention(nn.Module):
    """Separate q/k/v/out projections and QK RMSNorms for the video and text streams, one joint attention.

    ``sparsity`` (k) and ``group`` (single- or group-skip) are fixed per block. ``text_out=False`` (the last block)
    drops ``to_add_out``: the text output is not used there.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, bias: bool, eps: float, sparsity: int, group: bool,
                 text_out: bool = True) -> None:  # fmt: skip
        super().__init__()
        if num_heads * head_dim != dim:
            raise ValueError(f"num_heads * head_dim must equal the hidden size {dim}, got {num_heads} * {head_dim}")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.sparsity, self.group = sparsity, group
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim, bias=bias) for _ in range(3))
        self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, dim, bias=bias) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(head_dim, eps), RMSNorm(head_dim, eps)
        self.norm_added_q, self.norm_added_k = RMSNorm(head_dim, eps), RMSNorm(head_dim, eps)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim, bias=bias), nn.Dropout(0.0)])
        self.to_add_out = nn.Linear(dim, dim, bias=bias) if text_out else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim))  # (B, L, D) -> (B, L, H, hd)

    def forward(self, x: torch.Tensor, e: torch.Tensor, ctx: AttentionContext
                ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """x ``(B, L, D)`` video, e ``(B, T, D)`` text -> (video out ``(B, L, D)``, text out ``(B, T, D)`` or None)."""
        q = ctx.rope.apply(self.norm_q(self._heads(self.to_q(x))), ctx.cos, ctx.sin)
        k = ctx.rope.apply(self.norm_k(self._heads(self.to_k(x))), ctx.cos, ctx.sin)
        v = self._heads(self.to_v(x))
        tq = self.norm_added_q(self._heads(self.add_q_proj(e)))
        tk = self.norm_added_k(self._heads(self.add_k_proj(e)))
        tv = self._heads(self.add_v_proj(e))
        if ctx.sp_group is None:
            out, text_out = skiparse.skiparse_attention(
                q, k, v, self.sparsity, self.group, tq, tk, tv, ctx.text_mask, ctx.video_mask
            )
        else:  # x is this rank's chunk of the video tokens; the text stream is replicated
            # Exchanged one by one, each rebinding dropping its token chunk (in inference) before the next.
            q = tokens_to_heads(q, ctx.sp_group)
            k = tokens_to_heads(k, ctx.sp_group)
            v = tokens_to_heads(v, ctx.sp_group)
            out, text_out = head_shard_attention(q, k, v, self.sparsity, self.group, tq, tk, tv,
                                                 text_mask=ctx.text_mask, video_mask=ctx.video_mask,
                                                 group=ctx.sp_group)  # fmt: skip
            if self.to_add_out is not None:
                text_out = sum_grad_over_group(text_out, ctx.sp_group)
        out = self.to_out[1](self.to_out[0](out.flatten(2)))
        if self.to_add_out is None:
            return out, None
        return out, self.to_add_out(text_out.flatten(2))

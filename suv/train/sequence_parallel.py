"""Sequence-parallel Skiparse attention (Ulysses style): split a long clip across ranks, all-to-all over heads.

Each of the ``W`` ranks of ``group`` holds a contiguous chunk of ``L / W`` video tokens with all ``H`` heads. One
all-to-all turns that into all ``L`` tokens for ``H / W`` heads, so every rank runs ordinary Skiparse attention
(which needs the whole sequence to form its sub-sequences) on its heads; a second all-to-all returns the output to
sequence chunks. Text tokens are replicated on every rank: each rank attends with its heads' slice and the text
output is gathered back over heads, so it is replicated too.

Gradient contract: a rank's text-input gradients cover only its heads, so gradients of replicated inputs (and of the
parameters that produce them) are summed over ``group`` by the caller, as with any replicated stream under
sequence parallelism.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

import skiparse


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Exchange the blocks of dim 0 (block j goes to rank j), in a contiguous layout."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


class _Exchange(torch.autograd.Function):
    """Sequence chunks (B, L/W, H, D) <-> head chunks (B, L, H/W, D); each direction's backward is the other."""

    @staticmethod
    def forward(ctx, x, group, to_heads: bool):
        ctx.group, ctx.to_heads = group, to_heads
        return (_seq_to_heads if to_heads else _heads_to_seq)(x, group)

    @staticmethod
    def backward(ctx, grad):
        return (_heads_to_seq if ctx.to_heads else _seq_to_heads)(grad, ctx.group), None, None


def _seq_to_heads(x, group):
    W = dist.get_world_size(group)
    B, Lw, H, D = x.shape
    # Block j of the send buffer (rank j's heads) goes to rank j; block j received is rank j's sequence chunk.
    send = x.reshape(B, Lw, W, H // W, D).permute(2, 0, 1, 3, 4)
    return _all_to_all(send, group).permute(1, 0, 2, 3, 4).reshape(B, W * Lw, H // W, D)


def _heads_to_seq(x, group):
    W = dist.get_world_size(group)
    B, L, Hw, D = x.shape
    send = x.reshape(B, W, L // W, Hw, D).transpose(0, 1)
    return _all_to_all(send, group).permute(1, 2, 0, 3, 4).reshape(B, L // W, W * Hw, D)


class _GatherHeads(torch.autograd.Function):
    """(B, T, H/W, D) -> (B, T, H, D) replicated; the gradient of a replicated output is this rank's heads' slice."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group, ctx.rank, ctx.heads = group, dist.get_rank(group), x.shape[2]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=2)

    @staticmethod
    def backward(ctx, grad):
        return grad[:, :, ctx.rank * ctx.heads:(ctx.rank + 1) * ctx.heads].contiguous(), None


def sequence_parallel_attention(q, k, v, sparsity=4, group_skip=False, text_q=None, text_k=None, text_v=None,
                                text_mask=None, video_mask=None, scale=None, group=None):
    """:func:`skiparse.skiparse_attention` with the video sequence split over ``group`` (default: the world).

    Args:
        q, k, v: ``(B, L / W, H, D)``, this rank's contiguous chunk of the natural-order video tokens.
        text_q, text_k, text_v: ``(B, T, H, D)``, the same on every rank. ``text_mask (B, T)`` likewise.
        video_mask: ``(B, L)``, the whole sequence's key mask, on every rank.

    Returns:
        ``out (B, L / W, H, D)`` for this rank's chunk, and ``text_out (B, T, H, D)`` (replicated) or None.
    """
    W, rank = dist.get_world_size(group), dist.get_rank(group)
    H = q.shape[2]
    if H % W:
        raise ValueError(f"sequence parallel: heads ({H}) must be divisible by the group size ({W})")
    heads = slice(rank * (H // W), (rank + 1) * (H // W))
    q, k, v = (_Exchange.apply(x, group, True) for x in (q, k, v))
    text = [None if t is None else t[:, :, heads] for t in (text_q, text_k, text_v)]
    out, text_out = skiparse.skiparse_attention(q, k, v, sparsity, group_skip, *text, text_mask=text_mask,
                                                video_mask=video_mask, scale=scale)
    out = _Exchange.apply(out, group, False)
    return out, (None if text_out is None else _GatherHeads.apply(text_out, group))

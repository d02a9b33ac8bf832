"""Sequence parallelism (Ulysses style): one clip's video tokens split over the ranks of a group.

Every rank of the group ``G`` (size ``W``) passes the same inputs to the model. After the patch embedding rank ``r``
keeps the contiguous video tokens ``[r L/W, (r+1) L/W)`` (``split_tokens``; needs ``L % W == 0`` and
``num_heads % W == 0``); every per-token layer runs on that chunk. Attention (``sequence_parallel_attention``) turns
the chunk into all ``L`` tokens for ``H / W`` heads with one all-to-all, so every rank runs ordinary Skiparse
attention (which needs the whole sequence to form its sub-sequences) on its heads, and a second all-to-all returns
the output to sequence chunks. Text tokens are replicated: each rank attends with its heads' slice and the text
output is gathered back over heads. The output tokens are all-gathered (``gather_tokens``), so every rank returns the
single-process output.

Gradient contract (the one place it is written down): every rank of G computes the same loss from that output and
backpropagates it. Then every parameter's gradient on a rank is a partial sum, and the SUM over G of each
parameter's gradient is the single-process gradient: ``sum_grads`` does it. This holds because the output gather's
backward keeps this rank's slice of the (replicated) output gradient, and the replicated text output of each
attention has its partial gradient summed over G (``sum_grad_over_group``) before the attention's per-head gather
takes this rank's heads. A data-parallel wrapper that averages over a world made of whole SP groups (DDP/FSDP in
``suv.train.trainer``) gives the data-parallel average when the loss is multiplied by ``W``.
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


class _Gather(torch.autograd.Function):
    """This rank's block of ``dim`` -> the blocks of every rank, concatenated, on every rank. Every rank computes the
    same loss from the result, so its gradient is the same everywhere and this rank's block gets its own slice of
    it (no sum)."""

    @staticmethod
    def forward(ctx, x, group, dim: int):
        ctx.rank, ctx.size, ctx.dim = dist.get_rank(group), x.shape[dim], dim
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad):
        return grad.narrow(ctx.dim, ctx.rank * ctx.size, ctx.size).contiguous(), None, None


class _SumGradOverGroup(torch.autograd.Function):
    """Identity on a replicated tensor whose gradient is partial on each rank: the backward sums it over the group."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def sum_grad_over_group(x: torch.Tensor, group) -> torch.Tensor:
    """``x`` unchanged; in the backward its gradient is summed over ``group`` (a replicated stream whose consumers
    on each rank see only part of it, e.g. the text output of one attention before its per-head gather)."""
    return _SumGradOverGroup.apply(x, group)


def gather_tokens(x: torch.Tensor, group) -> torch.Tensor:
    """``(B, L/W, C)`` chunks -> ``(B, L, C)`` on every rank (the backward keeps this rank's rows)."""
    return _Gather.apply(x, group, 1)


def split_tokens(length: int, num_heads: int, group) -> slice | None:
    """This rank's contiguous video tokens of ``length`` under sequence parallelism over ``group`` (None: not split,
    no group or a group of one). ValueError unless the group size divides ``length`` and ``num_heads``."""
    if group is None or dist.get_world_size(group) == 1:
        return None
    w = dist.get_world_size(group)
    if length % w:
        raise ValueError(f"sequence parallel: the video tokens ({length}) must be divisible by the group size ({w})")
    if num_heads % w:
        raise ValueError(f"sequence parallel: num_heads ({num_heads}) must be divisible by the group size ({w})")
    rank = dist.get_rank(group)
    return slice(rank * length // w, (rank + 1) * length // w)


def sum_sequence_parallel_grads(model: torch.nn.Module, group) -> None:
    """Sum every parameter's gradient over the SP group ``group``: afterwards each rank holds the single-process
    gradient (the contract in this module's docstring). Not needed under the trainer's DDP/FSDP (loss x W)."""
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)


def sequence_parallel_group(size: int, num_heads: int, device_type: str):
    """The SP group of this rank when ``size`` consecutive ranks split each clip, or None for ``size == 1``.

    Each row of a ``("dp", "sp")`` device mesh over the world is one SP group; each column is a data-parallel group.
    ValueError (naming ``sequence_parallel``) unless ``size`` divides the world size and ``num_heads``.
    """
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world % size:
        raise ValueError(f"sequence_parallel: {size} must divide the number of processes ({world})"
                         + ("" if world > 1 else "; run under torchrun"))  # fmt: skip
    if num_heads % size:
        raise ValueError(f"sequence_parallel: {size} must divide the model's num_heads ({num_heads})")
    if size == 1:
        return None
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device_type, (world // size, size), mesh_dim_names=("dp", "sp")).get_group("sp")


def tokens_to_heads(x: torch.Tensor, group=None) -> torch.Tensor:
    """``(B, L / W, H, D)`` token chunk -> ``(B, L, H / W, D)`` head chunk over ``group`` (autograd: the inverse).

    A caller that rebinds its name to the result (``q = tokens_to_heads(q, g)``) frees the chunk at once outside
    autograd, so the attention inputs peak at ``1 / W`` of one process's instead of ``2 / W``."""
    return _Exchange.apply(x, group, True)


def head_shard_attention(q, k, v, sparsity=4, group_skip=False, text_q=None, text_k=None, text_v=None, text_mask=None,
                         video_mask=None, scale=None, group=None):
    """:func:`skiparse.skiparse_attention` of this rank's heads, on the whole video sequence.

    Args:
        q, k, v: ``(B, L, H / W, D)``, this rank's heads of all the natural-order video tokens, as
            :func:`tokens_to_heads` returns them (a caller that exchanges each as soon as it is computed holds one
            projection's token chunk at a time).
        text_q, text_k, text_v: ``(B, T, H, D)``, the same on every rank. ``text_mask (B, T)`` likewise.
        video_mask: ``(B, L)``, the whole sequence's key mask, on every rank.

    Returns:
        ``out (B, L / W, H, D)`` for this rank's token chunk, and ``text_out (B, T, H, D)`` (replicated) or None.
    """
    rank = dist.get_rank(group)
    heads = slice(rank * q.shape[2], (rank + 1) * q.shape[2])
    text = [None if t is None else t[:, :, heads] for t in (text_q, text_k, text_v)]
    out, text_out = skiparse.skiparse_attention(q, k, v, sparsity, group_skip, *text, text_mask=text_mask,
                                                video_mask=video_mask, scale=scale)
    out = _Exchange.apply(out, group, False)
    return out, (None if text_out is None else _Gather.apply(text_out, group, 2))


def sequence_parallel_attention(q, k, v, sparsity=4, group_skip=False, text_q=None, text_k=None, text_v=None,
                                text_mask=None, video_mask=None, scale=None, group=None):
    """:func:`skiparse.skiparse_attention` with the video sequence split over ``group`` (default: the world):
    ``q, k, v (B, L / W, H, D)`` are this rank's contiguous chunk of the natural-order video tokens; the rest and the
    returns are as in :func:`head_shard_attention`."""
    W = dist.get_world_size(group)
    if q.shape[2] % W:
        raise ValueError(f"sequence parallel: heads ({q.shape[2]}) must be divisible by the group size ({W})")
    q, k, v = (tokens_to_heads(x, group) for x in (q, k, v))
    return head_shard_attention(q, k, v, sparsity, group_skip, text_q, text_k, text_v, text_mask, video_mask, scale,
                                group)

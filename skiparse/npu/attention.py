"""Skiparse attention on Ascend NPUs: the fused reorder feeding torch_npu's fused attention.

``forward`` and ``backward`` have the signatures of ``torch.ops.skiparse.attention`` and ``attention_backward``
(see ``skiparse/ops.py``). The k sub-sequences become k times the batch, each followed by a copy of the text
(``S = Lp/k + T`` rows, written in one pass by ``joint_reorder``), and run through ``npu_fusion_attention``
(layout BSND); the text output is the mean of its k copies. Its boolean ``atten_mask`` is
True where a key is *masked* (the opposite of SDPA's): it is built from the key mask only when something is
masked (sequence padding, the video mask or the text mask), as a (k*B, 1, S, S) tensor.

The backward hands ``npu_fusion_attention_grad`` the saved logsumexp as ``softmax_max`` with ``softmax_sum = 1``
(``exp(s - max) / sum`` is then ``exp(s - lse)``). Rows whose keys are all masked have ``lse = +inf``, so their
probabilities are 0; padding query rows are zero vectors with zero gradient, so they contribute nothing.

``fa`` is the module that provides the two fused-attention functions: ``torch_npu`` on an NPU; tests pass a CPU
stand-in written from their documentation, which checks this composition without NPU hardware.
"""
from __future__ import annotations

from types import ModuleType

import torch

from ..index import sub_length
from . import joint  # noqa: F401  (defines torch.ops.skiparse_npu)

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _torch_npu() -> ModuleType:
    import torch_npu  # noqa: PLC0415  (only importable where CANN is installed)

    return torch_npu


def _check(q: torch.Tensor) -> None:
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"skiparse npu backend: q has dtype {q.dtype}; expected float16, bfloat16 or float32 "
            "(npu_fusion_attention's dtypes)"
        )


class _Joint:
    """The joint sequences of one call: shapes, the video rows per sub-sequence and the fused-attention mask."""

    def __init__(self, q, text_q, text_mask, video_mask, sparsity, group):
        _check(q)
        self.B, self.L, self.H, self.D = q.shape
        self.T = 0 if text_q is None else text_q.shape[1]
        self.k, self.group = sparsity, group
        self.Ls = sub_length(self.L, sparsity)  # video rows of one sub-sequence (padding included)
        # Key mask, True = attend, in the joint layout (kB, S): padding rows come out False.
        ones = lambda n: torch.ones(self.B, n, dtype=torch.bool, device=q.device)  # noqa: E731
        video_keep = ones(self.L) if video_mask is None else video_mask
        text_keep = None if not self.T else ones(self.T) if text_mask is None else text_mask
        keep = self.join(video_keep, text_keep)
        self.alive = keep.any(dim=1)  # sub-sequences with at least one key
        masked = self.Ls * sparsity != self.L or video_mask is not None or text_mask is not None
        self.mask = None
        if masked:  # True = masked; a sub-sequence without keys is left unmasked and zeroed afterwards
            drop = ~(keep | ~self.alive[:, None])
            S = keep.shape[1]
            self.mask = drop[:, None, None, :].expand(-1, 1, S, -1).contiguous()

    def join(self, video: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """(B, L, *F) video, (B, T, *F) text -> (kB, S, *F): reordered video, then the text repeated."""
        return torch.ops.skiparse_npu.joint_reorder(video, text if self.T else None, self.k, self.group)

    def video(self, x: torch.Tensor) -> torch.Tensor:
        """(kB, S, ...) -> the video rows in natural order, (B, L, ...)."""
        return torch.ops.skiparse_npu.joint_restore(x, self.k, self.group, self.L, self.T)

    def text(self, x: torch.Tensor) -> torch.Tensor:
        """(kB, S, ...) -> the text rows of every copy, (B, k, T, ...)."""
        return x[:, self.Ls :].unflatten(0, (self.k, self.B)).transpose(0, 1)


def forward(q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale, fa=None):
    """``torch.ops.skiparse.attention`` on NPU: ``(out, text_out, lse, text_parts, text_lse)``."""
    fa = fa or _torch_npu()
    j = _Joint(q, text_q, text_mask, video_mask, sparsity, group)
    qs, ks, vs = j.join(q, text_q), j.join(k, text_k), j.join(v, text_v)
    out, smax, ssum = fa.npu_fusion_attention(qs, ks, vs, j.H, "BSND", atten_mask=j.mask, scale=scale,
                                              keep_prob=1.0, sparse_mode=0)[:3]  # fmt: skip
    lse = (smax[..., 0] + ssum[..., 0].log()).transpose(1, 2)  # (kB, S, H), fp32
    if j.mask is not None:
        out = out * j.alive[:, None, None, None].to(out.dtype)
        lse = lse.masked_fill(~j.alive[:, None, None], float("inf"))
    text_parts = j.text(out).float()
    text_lse = j.text(lse).permute(0, 3, 1, 2)  # (B, H, k, T)
    return j.video(out), text_parts.mean(1).to(q.dtype), j.video(lse).transpose(1, 2), text_parts, text_lse


def backward(dout, dtext_out, q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale,
             out, lse, text_parts, text_lse, fa=None):  # fmt: skip
    """``torch.ops.skiparse.attention_backward`` on NPU: ``(dq, dk, dv, dtext_q, dtext_k, dtext_v)``."""
    fa = fa or _torch_npu()
    j = _Joint(q, text_q, text_mask, video_mask, sparsity, group)
    qs, ks, vs = j.join(q, text_q), j.join(k, text_k), j.join(v, text_v)
    # Every text copy receives 1/k of the text gradient (text_out is the mean of the copies).
    dy = j.join(dout.contiguous(), dtext_out.div(sparsity))
    parts = text_parts.to(q.dtype).transpose(0, 1).flatten(0, 1)  # (kB, T, H, D)
    attn_in = torch.cat([torch.ops.skiparse.reorder(out, sparsity, group), parts], dim=1)
    stats = torch.ops.skiparse.reorder(lse.transpose(1, 2).contiguous(), sparsity, group)  # (kB, Ls, H)
    stats = torch.cat([stats, text_lse.permute(2, 0, 3, 1).flatten(0, 1)], dim=1)  # (kB, S, H)
    softmax_max = stats.transpose(1, 2).unsqueeze(-1).expand(-1, -1, -1, 8).contiguous()  # (kB, H, S, 8)
    dqs, dks, dvs = fa.npu_fusion_attention_grad(
        qs, ks, vs, dy, j.H, "BSND", atten_mask=j.mask, softmax_max=softmax_max,
        softmax_sum=torch.ones_like(softmax_max), attention_in=attn_in, scale_value=scale, keep_prob=1.0,
        sparse_mode=0,
    )[:3]
    # A text row's gradient is the sum over its k copies.
    return (*(j.video(g) for g in (dqs, dks, dvs)), *(j.text(g).sum(1) for g in (dqs, dks, dvs)))

"""CPU stand-ins for ``torch_npu.npu_fusion_attention`` and ``npu_fusion_attention_grad``, written from their
documentation (Ascend PyTorch API reference): layout BSND, ``atten_mask`` True = masked, ``softmax_max`` and
``softmax_sum`` of shape (B, N, S, 8) (the value repeated 8 times), ``attention_in`` the forward output. Computed in
fp64 so that they isolate errors of the composition in ``skiparse.npu.attention``."""
from __future__ import annotations

import torch


def _scores(query, key, atten_mask, scale):
    s = torch.einsum("bqhd,bkhd->bhqk", query.double(), key.double()) * scale
    return s if atten_mask is None else s.masked_fill(atten_mask, float("-inf"))


def npu_fusion_attention(query, key, value, head_num, input_layout, *, atten_mask=None, scale=1.0, keep_prob=1.0,
                         sparse_mode=0, **unused):  # fmt: skip
    assert input_layout == "BSND" and head_num == query.shape[2] and keep_prob == 1.0 and sparse_mode == 0
    assert atten_mask is None or atten_mask.dtype == torch.bool
    s = _scores(query, key, atten_mask, scale)
    smax = s.amax(-1, keepdim=True)
    ssum = (s - smax).exp().sum(-1, keepdim=True)
    out = torch.einsum("bhqk,bkhd->bqhd", (s - smax).exp() / ssum, value.double()).to(query.dtype)
    stat = lambda x: x.float().expand(*x.shape[:-1], 8).contiguous()  # noqa: E731
    return out, stat(smax), stat(ssum), torch.empty(0), 0, 0, 0


def npu_fusion_attention_grad(query, key, value, dy, head_num, input_layout, *, atten_mask=None, softmax_max=None,
                              softmax_sum=None, attention_in=None, scale_value=1.0, keep_prob=1.0, sparse_mode=0,
                              **unused):  # fmt: skip
    assert input_layout == "BSND" and head_num == query.shape[2] and keep_prob == 1.0 and sparse_mode == 0
    s = _scores(query, key, atten_mask, scale_value)
    p = (s - softmax_max[..., :1].double()).exp() / softmax_sum[..., :1].double()
    dy64 = dy.double()
    dp = torch.einsum("bqhd,bkhd->bhqk", dy64, value.double())
    delta = (dy64 * attention_in.double()).sum(-1).transpose(1, 2)[..., None]  # (B, N, S, 1)
    ds = p * (dp - delta) * scale_value
    dq = torch.einsum("bhqk,bkhd->bqhd", ds, key.double())
    dk = torch.einsum("bhqk,bqhd->bkhd", ds, query.double())
    dv = torch.einsum("bhqk,bqhd->bkhd", p, dy64)
    return dq.to(query.dtype), dk.to(key.dtype), dv.to(value.dtype), torch.empty(0)

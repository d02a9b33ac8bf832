"""The models' skiparse ops under ``torch.compile(fullgraph=True)`` with the default backend (inductor) on the CPU:
one graph, and the same outputs and gradients as eager. (``tests/test_ops.py`` checks the ops with ``aot_eager``.)"""
from __future__ import annotations

import torch

from skiparse.api import winograd_pays_off
from suv.models import SparseUMMDiT
from suv.models.attention import AttentionContext
from suv.vae.layers import CausalConv3d


def _compiled_matches_eager(fn, inputs, atol=1e-5, rtol=1e-4):
    torch._dynamo.reset()
    results = []
    for run in (fn, torch.compile(fn, fullgraph=True)):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        out = run(*leaves)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.square().sum() for o in outs).backward()
        results.append([o.detach() for o in outs] + [t.grad for t in leaves])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol)


def test_joint_attention_compiles_with_inductor():
    """A group-skip k = 2 block's attention (RoPE, QK norms, text mask, skiparse attention, output projections)."""
    torch.manual_seed(0)
    model = SparseUMMDiT.from_config("suv-tiny")
    attention = model.transformer_blocks[1][1].attn1
    assert attention.sparsity == 2 and attention.group
    cos, sin = model.rope.tables((3, 4, 4), torch.device("cpu"))
    text_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    ctx = AttentionContext(cos, sin, model.rope, text_mask, None)
    _compiled_matches_eager(lambda x, e: attention(x, e, ctx), [torch.randn(2, 48, 32), torch.randn(2, 5, 32)])


def test_causal_conv_winograd_compiles_with_inductor():
    """A WF-VAE causal 3x3x3 conv at a size where it runs ``skiparse.conv3d_3x3`` (Winograd), with its context."""
    torch.manual_seed(0)
    conv = CausalConv3d(8, 8, 3)
    x = torch.randn(1, 8, 5, 32, 32)
    assert winograd_pays_off(tuple(x.shape), tuple(conv.conv.weight.shape))
    _compiled_matches_eager(conv, [x], atol=1e-4)

"""torch.ops.skiparse: opcheck on every op, fake shapes, torch.compile(fullgraph=True)."""
import pytest
import torch
import torch.nn as nn

import skiparse
from skiparse_testing import make_inputs, requires_cpu_ext

pytestmark = requires_cpu_ext


def attention_args(B=2, L=23, H=2, D=8, T=3, k=2, group=True, dtype=torch.float64, text=True, masks=True):
    kw = make_inputs(B, L, H, D, T if text else 0, dtype=dtype, masks=masks)
    return (kw["q"], kw["k"], kw["v"], kw.get("text_q"), kw.get("text_k"), kw.get("text_v"),
            kw.get("text_mask"), kw.get("video_mask"), k, group, D ** -0.5)


@pytest.mark.parametrize("k,group", [(1, False), (2, True), (3, False)])
@pytest.mark.parametrize("text", [True, False])
def test_opcheck_attention(k, group, text):
    args = attention_args(k=k, group=group, text=text, masks=text)
    torch.library.opcheck(torch.ops.skiparse.attention.default, args)


def test_opcheck_attention_backward():
    args = attention_args()
    out, text_out, lse, parts, text_lse = torch.ops.skiparse.attention(*args)
    bwd_args = (torch.randn_like(out), torch.randn_like(text_out), *args, out, lse, parts, text_lse)
    torch.library.opcheck(
        torch.ops.skiparse.attention_backward.default,
        tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in bwd_args),
    )


@pytest.mark.parametrize("k,group", [(1, False), (2, True), (3, False), (4, True)])
def test_opcheck_reorder_restore(k, group):
    x = torch.randn(2, 23, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.skiparse.reorder.default, (x, k, group))
    y = torch.ops.skiparse.reorder(x, k, group).detach().requires_grad_(True)
    torch.library.opcheck(torch.ops.skiparse.restore.default, (y, k, group, 23))


def test_fake_shapes_match_real():
    from torch._subclasses.fake_tensor import FakeTensorMode

    args = attention_args(dtype=torch.float32)
    real = torch.ops.skiparse.attention(*args)
    with FakeTensorMode() as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        fake = torch.ops.skiparse.attention(*fake_args)
    for r, f in zip(real, fake):
        assert r.shape == f.shape and r.dtype == f.dtype


class SkiparseBlock(nn.Module):
    """A tiny joint-attention block of the kind SUV uses: projections around skiparse_attention."""

    def __init__(self, dim=16, heads=2, sparsity=2, group=True):
        super().__init__()
        self.qkv, self.text_qkv = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3 * dim)
        self.heads, self.sparsity, self.group = heads, sparsity, group

    def forward(self, x, text):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, -1).unbind(2)
        tq, tk, tv = self.text_qkv(text).view(B, text.shape[1], 3, self.heads, -1).unbind(2)
        out, text_out = skiparse.skiparse_attention(q, k, v, self.sparsity, self.group, tq, tk, tv)
        return out.reshape(B, L, C), text_out.reshape(B, -1, C)


def test_torch_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    model = SkiparseBlock()
    x, text = torch.randn(2, 37, 16, requires_grad=True), torch.randn(2, 4, 16)
    eager_out, eager_text = model(x, text)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, text_out = compiled(x, text)
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(text_out, eager_text)
    (g_eager,) = torch.autograd.grad(eager_out.sum() + eager_text.sum(), x)
    (g,) = torch.autograd.grad(out.sum() + text_out.sum(), x)
    torch.testing.assert_close(g, g_eager)


def test_torch_compile_inductor():
    torch._dynamo.reset()
    model = SkiparseBlock(sparsity=4, group=False)
    x, text = torch.randn(1, 50, 16), torch.randn(1, 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x, text)[0], model(x, text)[0])

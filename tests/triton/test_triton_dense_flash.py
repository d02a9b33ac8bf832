"""The dense flash-attention baselines of the loop report compute attention and its gradients (interpreter, against
SDPA in fp64)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
from skiparse.triton import configs, dense_flash  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")


def strided_inputs():
    """(B, N, H, D) views of (B, H, N, D) tensors: the kernels read rows through their strides."""
    return [torch.randn(2, 64, 2, 32).transpose(1, 2).contiguous().transpose(1, 2) for _ in range(3)]


def sdpa64(q, k, v, scale):
    return F.scaled_dot_product_attention(*(x.double().transpose(1, 2) for x in (q, k, v)), scale=scale)


def test_dense_flash_matches_sdpa():
    q, k, v = strided_inputs()
    out = dense_flash.dense_flash_fwd(q, k, v, 0.3, configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=32))
    torch.testing.assert_close(out.double(), sdpa64(q, k, v, 0.3).transpose(1, 2), atol=2e-5, rtol=1e-4)


def test_dense_flash_backward_matches_sdpa():
    q, k, v = strided_inputs()
    d_out = torch.randn(2, 64, 2, 32)
    q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
    out = sdpa64(q64, k64, v64, 0.3).transpose(1, 2)
    ref = torch.autograd.grad(out, (q64, k64, v64), d_out.double())
    scores = torch.einsum("bnhd,bmhd->bhnm", q64, k64) * 0.3
    lse = torch.logsumexp(scores, -1).float().detach()
    delta = (d_out.double() * out).sum(-1).transpose(1, 2).float().contiguous().detach()
    grads = dense_flash.dense_flash_bwd(q, k, v, d_out, lse, delta, 0.3, configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=32),
                                        configs.cfg(4, 1, BLOCK_M=32, BLOCK_N=16))
    for name, g, r in zip("qkv", grads, ref):
        torch.testing.assert_close(g.double(), r, atol=5e-5, rtol=1e-4, msg=lambda m: f"d{name}: {m}")

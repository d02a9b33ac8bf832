"""The dense flash-attention baseline of the loop report computes attention (interpreter, against SDPA in fp64)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
from skiparse.triton import configs, dense_flash  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")


def test_dense_flash_matches_sdpa():
    q, k, v = (torch.randn(2, 64, 2, 32).transpose(1, 2).contiguous().transpose(1, 2) for _ in range(3))
    out = dense_flash.dense_flash_fwd(q, k, v, 0.3, configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=32))
    ref = F.scaled_dot_product_attention(*(x.double().transpose(1, 2) for x in (q, k, v)), scale=0.3)
    torch.testing.assert_close(out.double(), ref.transpose(1, 2), atol=2e-5, rtol=1e-4)

"""The Triton row addressing equals the Python index math (``skiparse/index.py``), run by the interpreter."""
import pytest
import torch

pytest.importorskip("triton")
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from skiparse.index import index_table, sub_length  # noqa: E402
from skiparse.triton.attention_common import video_rows  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")


@triton.jit
def _rows_kernel(OUT, SUB, L, sparsity, GROUP: tl.constexpr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    for start in range(0, SUB, BLOCK):
        rows, valid = video_rows(start, offs, s, SUB, L, sparsity, GROUP)
        tl.store(OUT + s * SUB + start + offs, tl.where(valid, rows, -1), mask=start + offs < SUB)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("L", [1, 7, 64, 97])
def test_video_rows_match_the_index_table(k, group, L):
    sub = sub_length(L, k)
    out = torch.empty(k, sub, dtype=torch.int32)
    _rows_kernel[(k,)](out, sub, L, k, GROUP=group, BLOCK=16)
    assert torch.equal(out.long(), index_table(L, k, group))

"""The Triton row addressing and real-position counts equal the Python index math (``skiparse/index.py``), run by the interpreter."""
import pytest
import torch

pytest.importorskip("triton")
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from skiparse.index import index_table, sub_count, sub_length  # noqa: E402
from skiparse.triton.attention_common import video_rows  # noqa: E402
from skiparse.triton.index import sub_count as triton_sub_count  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")


@triton.jit
def _rows_kernel(OUT, COUNT, SUB, L, sparsity, GROUP: tl.constexpr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    tl.store(COUNT + s, triton_sub_count(s, L, sparsity, GROUP))
    offs = tl.arange(0, BLOCK)
    for start in range(0, SUB, BLOCK):
        rows, valid = video_rows(start, offs, s, SUB, L, sparsity, GROUP)
        tl.store(OUT + s * SUB + start + offs, tl.where(valid, rows, -1), mask=start + offs < SUB)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("L", [1, 7, 64, 97])
def test_video_rows_match_the_index_table(k, group, L):
    sub = sub_length(L, k)
    out, count = torch.empty(k, sub, dtype=torch.int32), torch.empty(k, dtype=torch.int32)
    _rows_kernel[(k,)](out, count, sub, L, k, GROUP=group, BLOCK=16)
    assert torch.equal(out.long(), index_table(L, k, group))
    assert count.tolist() == [sub_count(s, L, k, group) for s in range(k)]

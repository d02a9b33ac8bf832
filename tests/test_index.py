"""The index math: Python twin, C++ header and the upstream einops layout must agree exactly."""
import pytest
import torch

from skiparse import index, reference
from skiparse_testing import requires_cpu_ext

CASES = [(L, k, g) for L in (1, 5, 16, 70, 97, 192) for k in (1, 2, 3, 4, 8) for g in (False, True)]


@pytest.mark.parametrize("L,k,group", CASES)
def test_table_matches_einops_layout(L, k, group):
    x = torch.arange(1, L + 1)[None, :, None]  # (1, L, 1), token i holds i + 1; padding holds 0
    expected = reference.reorder(x, k, group).reshape(k, -1) - 1  # -1 marks padding
    assert torch.equal(index.index_table(L, k, group), expected)


@pytest.mark.parametrize("L,k,group", CASES)
def test_natural_index_and_inverse(L, k, group):
    Lp = index.padded_length(L, k)
    assert Lp % (k * k) == 0 and Lp - L < k * k
    seen = set()
    for i in range(Lp):
        s, r = index.sub_and_pos(i, k, group)
        assert 0 <= s < k and 0 <= r < Lp // k
        assert index.natural_index(s, r, k, group) == i
        seen.add((s, r))
    assert len(seen) == Lp


@pytest.mark.parametrize("L,k,group", CASES)
def test_lanes_cover_each_real_row_once(L, k, group):
    rows = [ln.start + n * ln.stride for s in range(k) for ln in index.lanes(s, L, k, group) for n in range(ln.count)]
    assert sorted(rows) == list(range(L))


@requires_cpu_ext
@pytest.mark.parametrize("L,k,group", CASES)
def test_cpp_header_matches_python(L, k, group):
    from skiparse import _C

    assert torch.equal(_C.index_table(L, k, group), index.index_table(L, k, group))

"""The Triton reorder / restore kernels, run by the interpreter on CPU tensors: bit-exact against the reference.

The interpreter config (BLOCK_L=4, BLOCK_C=16) makes these small shapes cross several position and feature tiles.
"""
import pytest
import torch

from skiparse import reference

pytest.importorskip("triton")
from skiparse.triton.reorder import reorder, restore  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")


def check(x, k, group):
    """Triton reorder equals the reference exactly, and restore brings ``x`` back exactly (as the reference's does)."""
    y = reorder(x, k, group)
    assert torch.equal(y, reference.reorder(x, k, group))
    assert torch.equal(restore(y, k, group, x.shape[1]), x)


def randn(*shape, dtype=torch.float32):
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    return (torch.randn(shape) * 100).to(dtype)


@pytest.mark.parametrize("L", [1, 7, 37, 97])
@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_matches_reference(k, group, L):
    check(randn(2, L, 2, 8), k, group)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64, torch.float16, torch.bool], ids=str)
@pytest.mark.parametrize("features", [(2, 8), (5,), (3, 12)], ids=["2x8", "5", "3x12"])
@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
def test_dtypes_and_features(dtype, features, group):
    # B = 1 and 2, C not a power of two, C over several feature tiles (36 = 16 + 16 + 4).
    for B, L in ((1, 19), (2, 13)):
        check(randn(B, L, *features, dtype=dtype), 3, group)


@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
def test_no_features(group):
    """A (B, L) tensor, such as a bool key mask: C = 1."""
    check(torch.rand(2, 23) > 0.3, 2, group)


@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
def test_strided_inputs(group):
    k, L = 3, 20
    big = randn(3, 2 * L + 5, 2, 24)
    views = {
        "length slice": big[1:, 5 : 5 + 2 * L : 2],  # strided rows, read in place
        "feature slice": big[:2, :L, :, 4:12],  # features not one block: copied first
        "batch-length transpose": big[:, :L].transpose(0, 1).contiguous().transpose(0, 1),
    }
    for name, x in views.items():
        y = reorder(x, k, group)
        assert torch.equal(y, reference.reorder(x, k, group)), name
        # restore's input as a strided view too: the sub-sequences in every other row block of a bigger tensor
        y_view = torch.stack([y, torch.full_like(y, 7)], dim=1)[:, 0]
        assert torch.equal(restore(y_view, k, group, L), x), name


def test_through_torch_ops(triton_kernels):
    """The launchers as ``skiparse.triton.ops`` registers them (here on CPU): schemas and autograd fit."""
    x = randn(2, 11, 2, 8).requires_grad_()
    y = torch.ops.skiparse.reorder(x, 2, True)
    assert torch.equal(y, reference.reorder(x, 2, True))
    g = randn(*y.shape)
    (dx,) = torch.autograd.grad(y, x, g)
    assert torch.equal(dx, reference.restore(g, 2, True, 11))

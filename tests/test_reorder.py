"""reorder / restore: the exact upstream layout, exact inverses, each other's backward, on every backend."""
import pytest
import torch

import skiparse
from skiparse import reference
from skiparse_testing import requires_cpu_ext

SHAPES = [(2, 70, 3, 4), (1, 97, 5), (3, 192), (2, 16, 2, 3, 2)]
BACKENDS = ["reference", pytest.param("cpu", marks=requires_cpu_ext)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool])
def test_layout_and_round_trip(backend, shape, k, group, dtype):
    x = (torch.randn(shape) * 100).to(dtype)
    with skiparse.use_backend(backend):
        y = skiparse.reorder(x, sparsity=k, group=group)
        back = skiparse.restore(y, sparsity=k, group=group, length=shape[1])
    assert torch.equal(y, reference.reorder(x, k, group))  # exactly the upstream layout, zero padding
    assert torch.equal(back, x)  # exact inverse


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,group", [(2, False), (3, True), (4, True)])
def test_restore_then_reorder_is_identity_on_the_layout(backend, k, group):
    y = reference.reorder(torch.randn(2, 70, 6), k, group)  # a valid layout: zero padding rows
    with skiparse.use_backend(backend):
        z = skiparse.reorder(skiparse.restore(y, k, group, length=70), k, group)
    assert torch.equal(z, y)


@requires_cpu_ext
def test_non_contiguous_input():
    x = torch.randn(70, 2, 8).transpose(0, 1)  # (2, 70, 8), non-contiguous
    with skiparse.use_backend("cpu"):
        assert torch.equal(skiparse.reorder(x, 3, True), reference.reorder(x, 3, True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,group", [(1, False), (2, True), (3, False), (4, True)])
def test_gradients_are_each_others_inverse(backend, k, group):
    x = torch.randn(2, 37, 3, dtype=torch.float64, requires_grad=True)
    with skiparse.use_backend(backend):
        assert torch.autograd.gradcheck(lambda t: skiparse.reorder(t, k, group), (x,))
        y = skiparse.reorder(x, k, group).detach().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: skiparse.restore(t, k, group, length=37), (y,))
        # backward of reorder is restore: the gradient of a sum weighted by the layout is the restored weights
        w = torch.randn_like(y)
        (g,) = torch.autograd.grad(skiparse.reorder(x, k, group), x, w)
        assert torch.equal(g, reference.restore(w, k, group, 37))

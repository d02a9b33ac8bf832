"""Masks and inputs of any memory layout give the results of contiguous ones, on every backend that runs here.

Key masks arrive sliced (``wide[:, ::2]``), expanded over the batch (stride 0, as ``mask[None].expand(B, T)``
gives) or transposed; q/k/v as chunks of a fused projection, expanded over the batch or transposed from
(B, H, L, D). Each backend's forward and gradients are compared with the fp64 reference on contiguous copies.
The Triton kernels run under the interpreter on CPU tensors; the NPU composition is covered in ``tests/npu``.
"""
import contextlib
import importlib.util

import pytest
import torch

import skiparse
from skiparse import reference
from skiparse_testing import requires_cpu_ext

NAMES = ("q", "k", "v", "text_q", "text_k", "text_v")
B, L, H, D, T = 3, 45, 2, 16, 7
SCALE = D**-0.5

BACKENDS = [
    "reference",
    pytest.param("cpu", marks=requires_cpu_ext),
    pytest.param("triton", marks=[
        pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
        pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter run: CPU tensors only"),
    ]),
]


def mask_layouts(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """One (B, n) bool mask per layout (about 30% of the keys masked)."""
    return {
        "contiguous": torch.rand(B, n, generator=g) > 0.3,
        "sliced": (torch.rand(B, 2 * n, generator=g) > 0.3)[:, ::2],
        "expanded": (torch.rand(n, generator=g) > 0.3)[None].expand(B, n),
        "transposed": (torch.rand(n, B, generator=g) > 0.3).t(),
    }


# layout -> (shape of the six leaves (video, then text) from the row count N, the (B, N, H, D) views of a leaf)
INPUT_LAYOUTS = {
    "fused-qkv": (lambda n: (B, n, 3, H, D), lambda x, i: x[:, :, i]),  # leaf i of a (B, N, 3, H, D) projection
    "batch-expanded": (lambda n: (1, n, H, D), lambda x, i: x.expand(B, -1, -1, -1)),  # stride 0 on the batch
    "head-major": (lambda n: (B, H, n, D), lambda x, i: x.transpose(1, 2)),  # (B, H, N, D) storage
}


@contextlib.contextmanager
def on_backend(name: str):
    if name == "triton":  # the Triton launchers bound to CPU tensors (the interpreter runs them)
        from skiparse.triton.ops import registered_for

        with registered_for("CPU"):
            yield
    else:
        with skiparse.use_backend(name):
            yield


def attention(backend, tensors, text_mask, video_mask, k, group):
    """(out, text_out) of ``backend`` for the six (B, N, H, D) tensors in ``NAMES`` order."""
    with on_backend(backend):
        if backend == "triton":  # through the op: the api would pick the C++ kernels for CPU tensors
            return torch.ops.skiparse.attention(*tensors, text_mask, video_mask, k, group, SCALE)[:2]
        return skiparse.skiparse_attention(*tensors[:3], sparsity=k, group=group, text_q=tensors[3],
                                           text_k=tensors[4], text_v=tensors[5], text_mask=text_mask,
                                           video_mask=video_mask, scale=SCALE)


def reference_attention(tensors, text_mask, video_mask, k, group):
    """fp64 reference on contiguous copies of everything."""
    t = [x.contiguous() for x in tensors]
    return reference.skiparse_attention(*t[:3], k, group, *t[3:], text_mask.contiguous(), video_mask.contiguous(),
                                        SCALE)


def check(backend, leaves, views_of, text_mask, video_mask, k, group, g):
    """Forward and the gradients of ``leaves`` on ``backend`` against the fp64 reference."""
    leaves = [x.requires_grad_() for x in leaves]
    out = attention(backend, views_of(leaves), text_mask, video_mask, k, group)
    grads = [torch.randn(o.shape, generator=g) for o in out]
    d = torch.autograd.grad(out, leaves, grads)
    leaves64 = [x.detach().double().requires_grad_() for x in leaves]
    ref = reference_attention(views_of(leaves64), text_mask, video_mask, k, group)
    ref_d = torch.autograd.grad(ref, leaves64, [x.double() for x in grads])
    for name, o, r in zip(("out", "text_out"), out, ref):
        torch.testing.assert_close(o.double(), r, atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    for name, x, r in zip(NAMES, d, ref_d):
        torch.testing.assert_close(x.double(), r, atol=5e-5, rtol=1e-4, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["sliced", "expanded", "transposed"])
@pytest.mark.parametrize("k,group", [(2, False), (3, True)])
def test_mask_layouts_match_contiguous_masks(backend, layout, k, group):
    g = torch.Generator().manual_seed(1)
    text_mask, video_mask = mask_layouts(T, g)[layout], mask_layouts(L, g)[layout]
    assert not text_mask.is_contiguous() and not video_mask.is_contiguous()
    leaves = [torch.randn(B, n, H, D, generator=g) for n in (L, L, L, T, T, T)]
    check(backend, leaves, lambda x: x, text_mask, video_mask, k, group, g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", list(INPUT_LAYOUTS))
def test_strided_inputs_match_contiguous_inputs(backend, layout):
    g = torch.Generator().manual_seed(2)
    shape, view = INPUT_LAYOUTS[layout]
    leaves = [torch.randn(shape(n), generator=g) for n in (L, L, L, T, T, T)]
    check(backend, leaves, lambda xs: [view(x, i % 3) for i, x in enumerate(xs)],
          mask_layouts(T, g)["sliced"], mask_layouts(L, g)["expanded"], 2, True, g)

"""The Triton attention kernels, run by the interpreter on CPU tensors, against the PyTorch reference.

Through the ``triton_kernels`` fixture (``conftest.py``) these tests call ``torch.ops.skiparse`` exactly as a GPU
model would: the same schemas, autograd formula and launchers.
"""
import pytest
import torch

from skiparse import reference
from skiparse_testing import assert_fa_rule, cast, make_inputs, tensor_inputs

pytest.importorskip("triton")
from skiparse.triton import attention as attention_launchers  # noqa: E402
from skiparse.triton import ops as triton_ops  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")

NAMES = ("q", "k", "v", "text_q", "text_k", "text_v")


def attention(kw, k, group, scale=None):
    """``torch.ops.skiparse.attention`` (out, text_out) from keyword inputs as ``make_inputs`` builds them."""
    t = [kw.get(n) for n in NAMES]
    scale = kw["q"].shape[-1] ** -0.5 if scale is None else scale
    out, text_out, *_ = torch.ops.skiparse.attention(
        *t, kw.get("text_mask"), kw.get("video_mask"), k, group, scale
    )
    return out, text_out


def reference_attention(kw, k, group):
    t = {n: kw.get(n) for n in NAMES}
    return reference.skiparse_attention(
        t["q"], t["k"], t["v"], k, group, t["text_q"], t["text_k"], t["text_v"],
        kw.get("text_mask"), kw.get("video_mask"), kw["q"].shape[-1] ** -0.5,
    )


def outputs_and_grads(fn, kw, k, group, seed=1):
    """Forward outputs and the gradients of every input for fixed random output gradients."""
    out, text_out = fn(kw, k, group)
    outs = [out] + ([text_out] if text_out is not None and text_out.numel() else [])
    g = torch.Generator().manual_seed(seed)
    grads = [torch.randn(o.shape, generator=g).to(o.dtype) for o in outs]
    names = tensor_inputs(kw)
    gs = torch.autograd.grad(outs, [kw[n] for n in names], grads)
    return outs, dict(zip(names, gs))


CASES = [  # (B, L, H, D, T, k, group, masks)
    (1, 37, 1, 32, 5, 1, False, False),
    (2, 37, 2, 32, 5, 2, False, True),
    (1, 50, 2, 64, 7, 2, True, False),
    (1, 43, 1, 32, 3, 3, False, True),
    (2, 61, 1, 32, 6, 3, True, True),
    (1, 70, 2, 32, 9, 4, False, False),
    (1, 97, 1, 64, 4, 4, True, True),
    (2, 40, 2, 32, 0, 4, True, True),  # no text
]


@pytest.mark.parametrize("B,L,H,D,T,k,group,masks", CASES)
def test_fp32_matches_fp64_reference(triton_kernels, B, L, H, D, T, k, group, masks):
    kw = make_inputs(B, L, H, D, T, masks=masks)
    outs, grads = outputs_and_grads(attention, kw, k, group)
    ref_outs, ref_grads = outputs_and_grads(reference_attention, cast(kw, torch.float64), k, group)
    for o, r in zip(outs, ref_outs):
        torch.testing.assert_close(o.double(), r, atol=2e-5, rtol=1e-4)
    for name, g in grads.items():
        torch.testing.assert_close(g.double(), ref_grads[name], atol=5e-5, rtol=1e-4, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k,group", [(2, True), (3, False), (4, True)])
def test_flash_attention_error_rule(triton_kernels, dtype, k, group):
    base = make_inputs(2, 53, 2, 32, 6, masks=True)
    ref_outs, ref_grads = outputs_and_grads(reference_attention, cast(base, torch.float64), k, group)
    pt_outs, pt_grads = outputs_and_grads(reference_attention, cast(base, dtype), k, group)
    outs, grads = outputs_and_grads(attention, cast(base, dtype), k, group)
    for name, o, p, r in zip(("out", "text_out"), outs, pt_outs, ref_outs):
        assert o.dtype == dtype
        assert_fa_rule(name, o, p, r, dtype)
    for name, g in grads.items():
        assert g.dtype == dtype
        assert_fa_rule(f"d{name}", g, pt_grads[name], ref_grads[name], dtype)


@pytest.mark.parametrize("k,group", [(1, False), (2, True), (4, False)])
def test_fully_masked_rows_are_zero_not_nan(triton_kernels, k, group):
    kw = make_inputs(2, 37, 2, 32, 4)
    kw["video_mask"] = torch.zeros(2, 37, dtype=torch.bool)
    kw["text_mask"] = torch.zeros(2, 4, dtype=torch.bool)
    kw["text_mask"][1, 2] = True  # batch item 1 keeps one text key: its rows are not fully masked
    outs, grads = outputs_and_grads(attention, kw, k, group)
    ref_outs, ref_grads = outputs_and_grads(reference_attention, cast(kw, torch.float64), k, group)
    assert outs[0][0].abs().max() == 0 and outs[1][0].abs().max() == 0
    for o, r in zip(outs, ref_outs):
        torch.testing.assert_close(o.double(), r, atol=2e-5, rtol=1e-4)
    for name, g in grads.items():
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), ref_grads[name], atol=5e-5, rtol=1e-4)


def test_strided_inputs_are_read_in_place(triton_kernels):
    """q, k, v as chunks of one fused projection (B, L, 3, H, D) and text as a (B, H, T, D) transpose."""
    B, L, H, D, T = 1, 45, 2, 32, 5
    qkv = torch.randn(B, L, 3, H, D)
    text = torch.randn(3, B, H, T, D).transpose(2, 3)
    kw = dict(q=qkv[:, :, 0], k=qkv[:, :, 1], v=qkv[:, :, 2], text_q=text[0], text_k=text[1], text_v=text[2])
    kw = {n: t.requires_grad_() if t.is_leaf else t for n, t in kw.items()}
    out, text_out = attention(kw, 3, True)
    ref, ref_text = reference_attention({n: t.contiguous() for n, t in kw.items()}, 3, True)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(text_out, ref_text, atol=2e-5, rtol=1e-4)


def test_ops_pass_opcheck(triton_kernels):
    kw = make_inputs(1, 21, 1, 16, 3, masks=True, requires_grad=True)
    args = (*[kw[n] for n in NAMES], kw["text_mask"], kw["video_mask"], 2, True, 0.25)
    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.skiparse.attention, args, test_utils=checks)
    x = torch.randn(2, 21, 3)
    torch.library.opcheck(torch.ops.skiparse.reorder, (x, 3, True))
    torch.library.opcheck(torch.ops.skiparse.restore, (torch.randn(6, 9, 3), 3, True, 21))


def test_registered_as_the_cuda_kernels():
    for name in triton_ops.KERNELS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"skiparse::{name}", "CUDA"), name


def test_unsupported_dtype_is_refused_by_name(triton_kernels):
    kw = make_inputs(1, 8, 1, 16, 0, dtype=torch.float64, requires_grad=False)
    with pytest.raises(TypeError, match="q has dtype torch.float64; expected float16, bfloat16 or float32"):
        attention(kw, 2, False)


def test_too_long_sequence_is_refused_before_launch():
    """Row offsets are 32-bit in the kernels: a sequence spanning 2^31 elements is refused with the reason."""
    q = torch.empty(1, 2**20, 24, 128, device="meta", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="must stay below 2\\^31"):
        attention_launchers.forward(q, q, q, None, None, None, None, None, 4, False, 0.1)


@pytest.mark.parametrize("name,row", [("q", 5), ("k", 8), ("v", 8), ("text_q", 3), ("text_k", 2), ("text_v", 1)])
def test_nan_inputs_reach_the_outputs(triton_kernels, name, row):
    """A NaN in an attended input row is not hidden. The outputs it reaches are NaN (the poisoned query's row; with a
    poisoned key or value, every output that attends to it); the fp64 reference (SDPA) is NaN there too, and
    spreads further (its NaN set contains ours); every other value matches it. A masked key's NaN drops out."""
    kw = make_inputs(1, 37, 1, 16, 4, masks=True)
    kw["video_mask"][0, 8] = kw["text_mask"][0, 1:3] = True  # the poisoned keys are attended to
    kw["video_mask"][0, 20] = False
    with torch.no_grad():
        kw[name][0, row, 0, 3] = float("nan")
        kw["k"][0, 20, 0, 0] = float("nan")  # masked: no effect
    outs, grads = outputs_and_grads(attention, kw, 2, True)
    ref_outs, ref_grads = outputs_and_grads(reference_attention, cast(kw, torch.float64), 2, True)
    out, text_out = outs
    hit = {"q": lambda: out[0, row].isnan().all(), "text_q": lambda: text_out[0, row].isnan().all(),
           "k": lambda: out.isnan().all(dim=-1).any(), "text_k": lambda: text_out.isnan().all(),
           "v": lambda: out[..., 3].isnan().any(), "text_v": lambda: text_out[..., 3].isnan().all()}
    assert hit[name]()
    for o, r in [*zip(outs, ref_outs), *((grads[n], ref_grads[n]) for n in grads)]:
        assert not (o.isnan() & ~r.isnan()).any()
        torch.testing.assert_close(o.double()[~r.isnan()], r[~r.isnan()], atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("scale", [-0.3, 0.0])
def test_non_positive_scale(triton_kernels, scale):
    """The forward folds a positive scale into its maximum; other scales flip or zero the queries (same result)."""
    kw = make_inputs(1, 29, 2, 16, 3, masks=True)
    out, text_out = attention(kw, 2, True, scale)
    kw64 = cast(kw, torch.float64)
    t = [kw64.get(n) for n in NAMES]
    ref, ref_text = reference.skiparse_attention(*t[:3], 2, True, *t[3:], kw["text_mask"], kw["video_mask"], scale)
    g = [torch.randn(out.shape), torch.randn(text_out.shape)]
    grads = torch.autograd.grad([out, text_out], [kw[n] for n in NAMES], g)
    ref_grads = torch.autograd.grad([ref, ref_text], t, [x.double() for x in g])
    for o, r in [(out, ref), (text_out, ref_text), *zip(grads, ref_grads)]:
        torch.testing.assert_close(o.double(), r, atol=5e-5, rtol=1e-4)

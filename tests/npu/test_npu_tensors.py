"""Every op on ``npu`` tensors against the reference on the CPU, forward and gradients, with masks of every layout
and strided q/k/v: what the first Ascend machine runs. Skipped (each test, at run time) without torch_npu, the NPU
kernels or a visible NPU; ``python -m pytest tests/npu/test_npu_tensors.py --collect-only -q`` lists the plan on
any machine.

reorder/restore move bytes: they must equal the reference exactly. The attention follows the FlashAttention error
rule against the fp64 reference, the same-dtype PyTorch reference on the CPU setting the scale.

``SKIPARSE_NPU_TESTS_REHEARSAL=1`` runs them on the CPU backend instead: a check of the tests themselves where
there is no NPU."""
from __future__ import annotations

import os

import pytest
import torch

import skiparse
from skiparse import reference
from skiparse.backends import status
from skiparse_testing import assert_fa_rule

from npu_layouts import MASK_LAYOUTS, make_mask, strided_qkv

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
REHEARSAL = os.environ.get("SKIPARSE_NPU_TESTS_REHEARSAL") == "1"
BACKEND = "cpu" if REHEARSAL else "npu"


@pytest.fixture(scope="module")
def npu() -> torch.device:
    if REHEARSAL:
        return torch.device("cpu")
    try:
        import torch_npu  # noqa: F401, PLC0415
    except Exception as e:  # ImportError, or OSError from a CANN library  # noqa: BLE001
        pytest.skip(f"torch_npu is not importable ({type(e).__name__})")
    ok, why = status("npu")
    if not ok:
        pytest.skip(f"skiparse npu backend off: {why}")
    return torch.device("npu", 0)


def _rows(shape, dtype, g, device):
    x = torch.randn(*shape, generator=g) * 4 if dtype.is_floating_point else torch.rand(*shape, generator=g) > 0.5
    return x.to(device, dtype)


# ------------------------------------------------------------------------------------------- reorder / restore
@pytest.mark.parametrize("dtype", [*FLOAT_DTYPES, torch.bool], ids=str)
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_reorder_and_restore_equal_the_reference(npu, k, group, dtype):
    """Shapes with padding (L not a multiple of k^2), one and two feature dims, narrow and UB-splitting rows."""
    g = torch.Generator().manual_seed(k)
    for shape in [(1, 1, 8), (2, 2 * k * k + 1, 3, 64), (3, 37, 24, 128), (1, 97, 50000)]:
        x = _rows(shape, dtype, g, npu)
        with skiparse.use_backend(BACKEND):
            y = skiparse.reorder(x, k, group)
            back = skiparse.restore(y, k, group, length=shape[1])
        assert y.device == npu and torch.equal(y.cpu(), reference.reorder(x.cpu(), k, group)), shape
        assert torch.equal(back.cpu(), x.cpu()), shape


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("group", [False, True])
def test_reorder_and_restore_gradients_equal_the_reference(npu, group, dtype):
    """Each op's backward is the other one, on the NPU: exact."""
    g = torch.Generator().manual_seed(1)
    x = _rows((2, 45, 2, 64), dtype, g, npu).requires_grad_()
    with skiparse.use_backend(BACKEND):
        y = skiparse.reorder(x, 3, group)
    dy = _rows(y.shape, dtype, g, npu)
    (dx,) = torch.autograd.grad(y, x, dy)
    assert torch.equal(dx.cpu(), reference.restore(dy.cpu(), 3, group, 45))

    sub = dy.detach().requires_grad_()
    with skiparse.use_backend(BACKEND):
        z = skiparse.restore(sub, 3, group, length=45)
    dz = _rows(z.shape, dtype, g, npu)
    (dsub,) = torch.autograd.grad(z, sub, dz)
    assert torch.equal(dsub.cpu(), reference.reorder(dz.cpu(), 3, group))


@pytest.mark.parametrize("view", ["transposed", "sliced", "expanded"])
def test_reorder_reads_strided_inputs(npu, view):
    g = torch.Generator().manual_seed(2)
    base = _rows((2, 4, 53, 64), torch.bfloat16, g, npu)  # (B, H, L, D)
    x = {"transposed": base.transpose(1, 2), "sliced": base.transpose(1, 2)[:, :, ::2],
         "expanded": base[:1].transpose(1, 2).expand(3, -1, -1, -1)}[view]
    with skiparse.use_backend(BACKEND):
        y = skiparse.reorder(x, 4, True)
    assert torch.equal(y.cpu(), reference.reorder(x.cpu(), 4, True))


# ------------------------------------------------------------------------------------------- attention
def _check_attention(q, k, v, tq, tk, tv, tm, vm, sparsity, group, seed=0):
    """Forward and gradients of ``skiparse_attention`` on the NPU (inputs may be strided views there) against the
    fp64 reference on the CPU, by the FlashAttention rule with the same-dtype CPU reference as the yardstick."""
    dtype, device = q.dtype, q.device
    names = ["q", "k", "v", "text_q", "text_k", "text_v"]
    ours = {n: t.detach().requires_grad_() for n, t in zip(names, (q, k, v, tq, tk, tv)) if t is not None}
    masks = {"text_mask": tm, "video_mask": vm}
    with skiparse.use_backend(BACKEND):
        out, text_out = skiparse.skiparse_attention(sparsity=sparsity, group=group, **ours, **masks)
    outs = [out] + ([text_out] if text_out is not None else [])
    g = torch.Generator().manual_seed(seed)
    grads = [torch.randn(*o.shape, generator=g) for o in outs]
    ours_grads = torch.autograd.grad(outs, list(ours.values()), [d.to(device, dtype) for d in grads])

    cpu_masks = {n: (m.cpu() if m is not None else None) for n, m in masks.items()}
    results = {}
    for ref_dtype in (torch.float64, dtype):
        leaves = {n: t.detach().cpu().to(ref_dtype).requires_grad_() for n, t in ours.items()}
        with skiparse.use_backend("reference"):
            r_out, r_text = skiparse.skiparse_attention(sparsity=sparsity, group=group, **leaves, **cpu_masks)
        r_outs = [r_out] + ([r_text] if r_text is not None else [])
        r_grads = torch.autograd.grad(r_outs, list(leaves.values()), [d.to(ref_dtype) for d in grads])
        results[ref_dtype] = (r_outs, r_grads)
    (ref_outs, ref_grads), (same_outs, same_grads) = results[torch.float64], results[dtype]
    for name, got, same, ref in zip(["out", "text_out"], outs, same_outs, ref_outs):
        assert_fa_rule(name, got.cpu(), same, ref, dtype)
    for name, got, same, ref in zip([f"d{n}" for n in ours], ours_grads, same_grads, ref_grads):
        assert_fa_rule(name, got.cpu(), same, ref, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_attention_matches_the_reference(npu, k, group, dtype):
    """Text, both masks, L with padding; head dim 128 as in the released model."""
    g = torch.Generator().manual_seed(10 + k)
    B, L, H, D, T = 2, 150, 3, 128, 17
    q, kk, v = (_rows((B, L, H, D), dtype, g, npu) / 4 for _ in range(3))
    tq, tk, tv = (_rows((B, T, H, D), dtype, g, npu) / 4 for _ in range(3))
    _check_attention(q, kk, v, tq, tk, tv, make_mask("contiguous", B, T, g, npu), make_mask("contiguous", B, L, g, npu),
                     k, group)  # fmt: skip


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("layout", MASK_LAYOUTS)
def test_attention_masks_of_every_layout_and_strided_inputs(npu, layout, group):
    """Masks as slices, stride-0 expands and transposes; q/k/v chunks of a fused projection, text transposed."""
    g = torch.Generator().manual_seed(20)
    B, L, H, D, T = 3, 101, 2, 64, 9
    q, kk, v = strided_qkv(B, L, H, D, g, device=npu, dtype=torch.bfloat16)
    tq, tk, tv = strided_qkv(B, T, H, D, g, heads_major=True, device=npu, dtype=torch.bfloat16)
    _check_attention(q, kk, v, tq, tk, tv, make_mask(layout, B, T, g, npu), make_mask(layout, B, L, g, npu), 3, group)


@pytest.mark.parametrize("k", [1, 4])
def test_attention_without_text_or_masks(npu, k):
    g = torch.Generator().manual_seed(30)
    q, kk, v = (_rows((1, 256, 2, 64), torch.float16, g, npu) / 4 for _ in range(3))
    _check_attention(q, kk, v, None, None, None, None, None, k, True)


def test_an_item_without_keys_gives_zeros_not_nan(npu):
    g = torch.Generator().manual_seed(40)
    q, kk, v = (_rows((2, 64, 2, 64), torch.bfloat16, g, npu).requires_grad_() for _ in range(3))
    vm = torch.ones(2, 64, dtype=torch.bool, device=npu)
    vm[1] = False
    with skiparse.use_backend(BACKEND):
        out, _ = skiparse.skiparse_attention(q, kk, v, 4, False, video_mask=vm)
    out.sum().backward()
    assert out[1].abs().max() == 0 and torch.isfinite(out).all()
    for t in (q, kk, v):
        assert torch.isfinite(t.grad).all() and t.grad[1].abs().max() == 0


@pytest.mark.parametrize("name", ["q", "k", "v"])
def test_nan_reaches_the_outputs_as_in_the_reference(npu, name):
    """One NaN in q, k or v: the outputs and gradients are NaN exactly where the fp64 reference's are (a diverged
    run must stay visible), finite and correct elsewhere."""
    g = torch.Generator().manual_seed(45)
    qkv = {n: _rows((2, 40, 2, 64), torch.float32, g, "cpu") / 4 for n in ("q", "k", "v")}
    text = {n: _rows((2, 5, 2, 64), torch.float32, g, "cpu") / 4 for n in ("text_q", "text_k", "text_v")}
    qkv[name][1, 7, 0, 3] = float("nan")
    leaves = {n: t.to(npu).requires_grad_() for n, t in {**qkv, **text}.items()}
    with skiparse.use_backend(BACKEND):
        out, text_out = skiparse.skiparse_attention(sparsity=2, group=False, **leaves)
    grads = torch.autograd.grad((out.sum() + text_out.sum()), list(leaves.values()))
    ref_leaves = {n: t.double().requires_grad_() for n, t in {**qkv, **text}.items()}
    with skiparse.use_backend("reference"):
        r_out, r_text = skiparse.skiparse_attention(sparsity=2, group=False, **ref_leaves)
    r_grads = torch.autograd.grad((r_out.sum() + r_text.sum()), list(ref_leaves.values()))
    for label, got, ref in [("out", out, r_out), ("text_out", text_out, r_text),
                            *((f"d{n}", a, b) for n, a, b in zip(leaves, grads, r_grads))]:  # fmt: skip
        got, ref = got.detach().cpu().double(), ref.detach()
        assert torch.equal(got.isnan(), ref.isnan()), label
        torch.testing.assert_close(got[~ref.isnan()], ref[~ref.isnan()], atol=1e-4, rtol=1e-4, msg=label)


# ------------------------------------------------------------------------------------------- conv3d_3x3
@pytest.mark.parametrize("context", [False, True])
def test_conv3d_3x3_matches_the_reference(npu, context):
    """Other devices run F.conv3d: forward and gradients by the same rule (fp32 CPU as the yardstick)."""
    g = torch.Generator().manual_seed(50)
    x, w, b = torch.randn(1, 8, 3, 12, 10, generator=g), torch.randn(16, 8, 3, 3, 3, generator=g), torch.randn(16)
    ctx = torch.randn(1, 8, 2, 12, 10, generator=g) if context else None
    dy = torch.randn(1, 16, 3 + (2 if context else 0) - 2, 12, 10, generator=g)
    results = {}
    for device, dtype in ((npu, torch.float32), ("cpu", torch.float64), ("cpu", torch.float32)):
        leaves = [t.to(device, dtype).requires_grad_() for t in (x, w, b)]
        c = None if ctx is None else ctx.to(device, dtype)
        y = skiparse.conv3d_3x3(*leaves, context=c)
        results[(str(device), dtype)] = [y, *torch.autograd.grad(y, leaves, dy.to(device, dtype))]
    ours, ref = results[(str(npu), torch.float32)], results[("cpu", torch.float64)]
    for name, a, s, r in zip(["y", "dx", "dw", "db"], ours, results[("cpu", torch.float32)], ref):
        assert_fa_rule(name, a.cpu(), s, r, torch.float32)


# ------------------------------------------------------------------------------------------- dispatch
def test_ops_pass_opcheck_on_npu(npu):
    g = torch.Generator().manual_seed(60)
    x = _rows((2, 23, 2, 64), torch.float16, g, npu)
    torch.library.opcheck(torch.ops.skiparse.reorder.default, (x, 2, True))
    torch.library.opcheck(torch.ops.skiparse.restore.default, (skiparse.reorder(x, 2, True), 2, True, 23))
    q, kk, v = (_rows((1, 40, 2, 64), torch.float16, g, npu) for _ in range(3))
    torch.library.opcheck(torch.ops.skiparse.attention.default, (q, kk, v, None, None, None, None, None, 2, False, 0.1),
                          test_utils=("test_schema", "test_faketensor"))  # fmt: skip


def test_a_tensor_on_the_second_npu_runs_there(npu):
    """The device guard: with NPU 0 current, inputs on NPU 1 are computed (and allocated) on NPU 1."""
    if REHEARSAL or torch.npu.device_count() < 2:
        pytest.skip("needs two NPUs")
    other = torch.device("npu", 1)
    torch.npu.set_device(0)
    g = torch.Generator().manual_seed(70)
    x = _rows((2, 37, 2, 64), torch.bfloat16, g, other)
    with skiparse.use_backend(BACKEND):
        y = skiparse.reorder(x, 3, False)
        out, _ = skiparse.skiparse_attention(x, x, x, 3, False)
    assert y.device == other and out.device == other
    assert torch.equal(y.cpu(), reference.reorder(x.cpu(), 3, False))
    with skiparse.use_backend("reference"):
        ref, _ = skiparse.skiparse_attention(*(x.cpu().double() for _ in range(3)), 3, False)
    torch.testing.assert_close(out.cpu().double(), ref, atol=2e-2, rtol=2e-2)

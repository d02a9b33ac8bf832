"""The NPU attention composition (reorder -> npu_fusion_attention -> restore, text copies and their mean, the
True-is-masked mask, the saved statistics fed to the backward) against the PyTorch reference, with CPU stand-ins
of the two torch_npu functions (``fused_attention_standin``). The fused kernels themselves need an NPU."""
from __future__ import annotations

import pytest
import torch

from skiparse import reference
from skiparse.npu import attention as npu_attention

import fused_attention_standin as standin
from npu_layouts import MASK_LAYOUTS, make_mask, strided_qkv

CASES = [  # (B, L, H, D, T, k, group, video_mask, text_mask)
    (1, 16, 2, 8, 0, 2, False, False, False),
    (2, 23, 2, 8, 5, 2, False, False, False),
    (2, 23, 2, 8, 5, 2, True, True, True),
    (1, 40, 3, 4, 3, 3, False, True, False),
    (2, 37, 2, 8, 4, 3, True, False, True),
]


def _inputs(B, L, H, D, T, video_mask, text_mask, g):
    x = [torch.randn(B, L, H, D, generator=g) for _ in range(3)]
    t = [torch.randn(B, T, H, D, generator=g) for _ in range(3)] if T else [None] * 3
    vm = torch.rand(B, L, generator=g) > 0.3 if video_mask else None
    tm = None
    if text_mask and T:
        tm = torch.ones(B, T, dtype=torch.bool)
        tm[:, T // 2 :] = False
    return x, t, tm, vm


def _check_against_the_reference(q, kk, v, tq, tk, tv, tm, vm, k, group, g):
    """Forward and backward of the composition (float32, CPU stand-ins) against the fp64 reference."""
    B, L, H, D = q.shape
    T = 0 if tq is None else tq.shape[1]
    scale = D**-0.5
    leaves = [x.double().requires_grad_() for x in (q, kk, v, *(t for t in (tq, tk, tv) if t is not None))]
    args = leaves[:3] + (leaves[3:] if T else [None] * 3)
    ref_out, ref_text = reference.skiparse_attention(*args[:3], k, group, *args[3:], tm, vm, scale)

    out, text_out, lse, parts, text_lse = npu_attention.forward(q, kk, v, tq, tk, tv, tm, vm, k, group, scale,
                                                                fa=standin)  # fmt: skip
    torch.testing.assert_close(out, ref_out.float(), atol=1e-5, rtol=1e-5)
    if T:
        torch.testing.assert_close(text_out, ref_text.float(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(parts.mean(1), text_out, atol=1e-6, rtol=1e-6)

    dout = torch.randn(B, L, H, D, generator=g)
    dtext = torch.randn(B, T, H, D, generator=g)
    loss = (ref_out * dout.double()).sum() + ((ref_text * dtext.double()).sum() if T else 0)
    ref_grads = torch.autograd.grad(loss, leaves)
    grads = npu_attention.backward(dout, dtext, q, kk, v, tq, tk, tv, tm, vm, k, group, scale, out, lse, parts,
                                   text_lse, fa=standin)  # fmt: skip
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want.float(), atol=1e-4, rtol=1e-4)
    for got in grads[3:] if not T else ():
        assert got.shape == (B, 0, H, D)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_backward_match_the_reference(case):
    B, L, H, D, T, k, group, vmask, tmask = case
    g = torch.Generator().manual_seed(sum(case[:6]))
    (q, kk, v), (tq, tk, tv), tm, vm = _inputs(B, L, H, D, T, vmask, tmask, g)
    _check_against_the_reference(q, kk, v, tq, tk, tv, tm, vm, k, group, g)


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("layout", MASK_LAYOUTS)
def test_masks_of_every_layout_and_strided_inputs(layout, group):
    """Video and text masks as slices, stride-0 expands or transposes; q/k/v as chunks of a fused projection and
    text as transposes of (B, H, T, D): the same result as contiguous inputs give the reference."""
    B, L, H, D, T, k = 3, 29, 2, 8, 6, 3
    g = torch.Generator().manual_seed(7)
    q, kk, v = strided_qkv(B, L, H, D, g)
    tq, tk, tv = strided_qkv(B, T, H, D, g, heads_major=True)
    vm, tm = make_mask(layout, B, L, g), make_mask(layout, B, T, g)
    _check_against_the_reference(q, kk, v, tq, tk, tv, tm, vm, k, group, g)


def test_statistics_match_the_cpu_backend():
    """lse, text_parts and text_lse mean what the CPU kernels' do (the same op schema on every device)."""
    g = torch.Generator().manual_seed(0)
    (q, kk, v), (tq, tk, tv), tm, vm = _inputs(2, 23, 2, 8, 5, True, True, g)
    ours = npu_attention.forward(q, kk, v, tq, tk, tv, tm, vm, 2, True, 0.3, fa=standin)
    cpu = torch.ops.skiparse.attention(q, kk, v, tq, tk, tv, tm, vm, 2, True, 0.3)
    for a, b in zip(ours, cpu):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_sub_sequence_without_keys_outputs_zero_and_no_nan():
    """Item 1 has no real key at all: its outputs and gradients are 0, the others are unaffected."""
    g = torch.Generator().manual_seed(1)
    (q, kk, v), (tq, tk, tv), _, _ = _inputs(2, 16, 2, 8, 3, False, False, g)
    vm = torch.ones(2, 16, dtype=torch.bool)
    tm = torch.ones(2, 3, dtype=torch.bool)
    vm[1], tm[1] = False, False
    out, text_out, lse, parts, text_lse = npu_attention.forward(q, kk, v, tq, tk, tv, tm, vm, 2, False, 0.3,
                                                                fa=standin)  # fmt: skip
    assert out[1].abs().max() == 0 and text_out[1].abs().max() == 0
    assert torch.isinf(lse[1]).all() and torch.isfinite(lse[0]).all()
    grads = npu_attention.backward(torch.ones_like(out), torch.ones_like(text_out), q, kk, v, tq, tk, tv, tm, vm, 2,
                                   False, 0.3, out, lse, parts, text_lse, fa=standin)  # fmt: skip
    for grad in grads:
        assert torch.isfinite(grad).all() and grad[1].abs().max() == 0


@pytest.mark.parametrize("which", [0, 1, 2])
def test_nan_in_q_k_or_v_reaches_the_outputs_as_in_the_reference(which):
    """The composition (masks, text copies and their mean) neither hides nor spreads a NaN beyond the reference; the
    fused kernel's own NaN handling is checked on the NPU (test_npu_tensors.py)."""
    g = torch.Generator().manual_seed(7)
    (q, kk, v), (tq, tk, tv), _, _ = _inputs(2, 23, 2, 8, 5, False, False, g)
    (q, kk, v)[which][1, 4, 0, 2] = float("nan")
    args = [x.double() for x in (q, kk, v)], [t.double() for t in (tq, tk, tv)]
    ref_out, ref_text = reference.skiparse_attention(*args[0], 2, False, *args[1], None, None, 8**-0.5)
    out, text_out, *_ = npu_attention.forward(q, kk, v, tq, tk, tv, None, None, 2, False, 8**-0.5, fa=standin)
    assert ref_out.isnan().any()
    for got, ref in ((out, ref_out), (text_out, ref_text)):
        assert torch.equal(got.isnan(), ref.isnan())
        torch.testing.assert_close(got[~got.isnan()], ref[~ref.isnan()].float(), atol=1e-5, rtol=1e-5)


def test_unsupported_dtype_is_refused_by_name():
    x = torch.randn(1, 8, 1, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="q has dtype torch.float64"):
        npu_attention.forward(x, x, x, None, None, None, None, None, 2, False, 0.5, fa=standin)



@pytest.mark.parametrize("T", [0, 3])
def test_joint_ops_pass_opcheck(T):
    """The internal joint-layout ops: schema, fake and reference kernel agree (torch.library.opcheck)."""
    video = torch.randn(2, 11, 2, 4)
    text = torch.randn(2, T, 2, 4) if T else None
    joint = torch.ops.skiparse_npu.joint_reorder(video, text, 2, True)
    torch.library.opcheck(torch.ops.skiparse_npu.joint_reorder.default, (video, text, 2, True),
                          test_utils=("test_schema", "test_faketensor"))  # fmt: skip
    torch.library.opcheck(torch.ops.skiparse_npu.joint_restore.default, (joint, 2, True, 11, T),
                          test_utils=("test_schema", "test_faketensor"))  # fmt: skip
    torch.testing.assert_close(torch.ops.skiparse_npu.joint_restore(joint, 2, True, 11, T), video)

"""The ``torch.ops.skiparse`` namespace: every schema, fake (meta) and autograd rule, defined once.

Backends register only device kernels for these schemas (C++ ``TORCH_LIBRARY_IMPL(skiparse, CPU, m)`` in
``csrc/cpu``, Triton for CUDA in ``skiparse/triton/ops.py``, AscendC for ``PrivateUse1`` in ``csrc/npu/host.cpp``),
so autograd, ``torch.compile`` and ``opcheck`` behave the same on every device. The NPU backend's two internal
layout ops live in their own namespace, ``torch.ops.skiparse_npu`` (``skiparse/npu/joint.py``).

Shapes (``k`` = sparsity, ``Lp`` = L padded to a multiple of k^2):

- ``reorder(x (B, L, *F), k, group) -> (k*B, Lp/k, *F)``
- ``restore(x (k*B, Lp/k, *F), k, group, L) -> (B, L, *F)``
- ``attention(q, k, v (B, L, H, D), text_q/k/v (B, T, H, D)?, text_mask (B, T)?, video_mask (B, L)?, ...)``
  ``-> out (B, L, H, D), text_out (B, T, H, D), lse (B, H, L), text_parts (B, k, T, H, D),``
  ``text_lse (B, H, k, T)``; the last three are fp32 (fp64 for fp64 inputs). ``text_parts`` are the per-copy text outputs (``text_out`` is their mean) and the
  logsumexps are kept for the backward; rows whose keys are all masked have ``lse = +inf`` and output 0.
  Without text, ``T = 0``.
- ``attention_backward(...) -> dq, dk, dv, dtext_q, dtext_k, dtext_v``
- ``conv3d_3x3(input (B, C_in, T, H, W), weight (C_out, C_in, kt, 3, 3), bias (C_out,)?, context (B, C_in, Tc, H, W)?)``
  ``-> (B, C_out, Tc+T-kt+1, H, W)``: the conv of ``cat([context, input], dim=2)`` (read in place, so a causal
  conv's padding frames cost no copy of its input), stride 1, zero padding 1 in space and none in time; output
  channels-last. CPU only (Winograd); its gradient is the ordinary conv3d gradient.
"""
from __future__ import annotations

import torch

from .index import sub_length

_lib = torch.library.Library("skiparse", "DEF")

_ATTN_ARGS = (
    "Tensor q, Tensor k, Tensor v, Tensor? text_q, Tensor? text_k, Tensor? text_v, "
    "Tensor? text_mask, Tensor? video_mask, int sparsity, bool group, float scale"
)
_lib.define("reorder(Tensor x, int sparsity, bool group) -> Tensor")
_lib.define("restore(Tensor x, int sparsity, bool group, int length) -> Tensor")
_lib.define("conv3d_3x3(Tensor input, Tensor weight, Tensor? bias, Tensor? context=None) -> Tensor")
_lib.define(f"attention({_ATTN_ARGS}) -> (Tensor, Tensor, Tensor, Tensor, Tensor)")
_lib.define(
    f"attention_backward(Tensor dout, Tensor dtext_out, {_ATTN_ARGS}, Tensor out, Tensor lse, "
    "Tensor text_parts, Tensor text_lse) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)"
)


# ----------------------------------------------------------------------------------------------- fakes
@torch.library.register_fake("skiparse::reorder")
def _reorder_fake(x, sparsity, group):
    return x.new_empty((sparsity * x.shape[0], sub_length(x.shape[1], sparsity), *x.shape[2:]))


@torch.library.register_fake("skiparse::restore")
def _restore_fake(x, sparsity, group, length):
    return x.new_empty((x.shape[0] // sparsity, length, *x.shape[2:]))


@torch.library.register_fake("skiparse::conv3d_3x3")
def _conv3d_3x3_fake(input, weight, bias, context=None):
    B, _, T, H, W = input.shape
    T += 0 if context is None else context.shape[2]
    shape = (B, weight.shape[0], T - weight.shape[2] + 1, H, W)
    return input.new_empty(shape).contiguous(memory_format=torch.channels_last_3d)


def _text_len(text_q):
    return 0 if text_q is None else text_q.shape[1]


@torch.library.register_fake("skiparse::attention")
def _attention_fake(q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale):
    B, L, H, D = q.shape
    T = _text_len(text_q)
    stats = torch.float64 if q.dtype == torch.float64 else torch.float32
    return (
        q.new_empty((B, L, H, D)),
        q.new_empty((B, T, H, D)),
        q.new_empty((B, H, L), dtype=stats),
        q.new_empty((B, sparsity, T, H, D), dtype=stats),
        q.new_empty((B, H, sparsity, T), dtype=stats),
    )


@torch.library.register_fake("skiparse::attention_backward")
def _attention_backward_fake(dout, dtext_out, q, k, v, text_q, text_k, text_v, *rest):
    B, L, H, D = q.shape
    text = [q.new_empty((B, _text_len(text_q), H, D)) for _ in range(3)]
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), *text)


# ----------------------------------------------------------------------------------------------- autograd
def _reorder_setup(ctx, inputs, output):
    x, ctx.sparsity, ctx.group = inputs
    ctx.length = x.shape[1]


def _reorder_backward(ctx, grad):
    return torch.ops.skiparse.restore(grad, ctx.sparsity, ctx.group, ctx.length), None, None


def _restore_setup(ctx, inputs, output):
    _, ctx.sparsity, ctx.group, _ = inputs


def _restore_backward(ctx, grad):
    return torch.ops.skiparse.reorder(grad, ctx.sparsity, ctx.group), None, None, None


torch.library.register_autograd("skiparse::reorder", _reorder_backward, setup_context=_reorder_setup)
torch.library.register_autograd("skiparse::restore", _restore_backward, setup_context=_restore_setup)


def _attention_setup(ctx, inputs, output):
    q, k, v, tq, tk, tv, tmask, vmask, ctx.sparsity, ctx.group, ctx.scale = inputs
    out, _, lse, text_parts, text_lse = output
    ctx.has_text = tq is not None
    ctx.save_for_backward(q, k, v, tq, tk, tv, tmask, vmask, out, lse, text_parts, text_lse)


def _attention_backward(ctx, dout, dtext_out, *_unused_stats):
    q, k, v, tq, tk, tv, tmask, vmask, out, lse, text_parts, text_lse = ctx.saved_tensors
    grads = torch.ops.skiparse.attention_backward(
        dout, dtext_out, q, k, v, tq, tk, tv, tmask, vmask, ctx.sparsity, ctx.group, ctx.scale,
        out, lse, text_parts, text_lse,
    )
    dq, dk, dv, dtq, dtk, dtv = grads
    if not ctx.has_text:
        dtq = dtk = dtv = None
    return dq, dk, dv, dtq, dtk, dtv, None, None, None, None, None


torch.library.register_autograd("skiparse::attention", _attention_backward, setup_context=_attention_setup)


def _conv3d_3x3_setup(ctx, inputs, output):
    input, weight, bias, context = inputs
    ctx.has_bias, ctx.has_context = bias is not None, context is not None
    ctx.save_for_backward(input, weight, context)


def _conv3d_3x3_backward(ctx, grad):
    input, weight, context = ctx.saved_tensors
    full = input if context is None else torch.cat([context, input], dim=2)
    needs_input = ctx.needs_input_grad[0] or (ctx.has_context and ctx.needs_input_grad[3])
    mask = [needs_input, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    dx, dw, db = torch.ops.aten.convolution_backward(
        grad, full, weight, [weight.shape[0]] if ctx.has_bias else None,
        [1, 1, 1], [0, 1, 1], [1, 1, 1], False, [0, 0, 0], 1, mask,
    )
    dcontext = None
    if ctx.has_context and dx is not None:
        dcontext, dx = dx.split([context.shape[2], input.shape[2]], dim=2)
    return dx, dw, db, dcontext


torch.library.register_autograd("skiparse::conv3d_3x3", _conv3d_3x3_backward, setup_context=_conv3d_3x3_setup)

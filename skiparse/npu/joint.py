"""The joint layout of the NPU attention, as two internal ops of ``torch.ops.skiparse_npu``.

``joint_reorder(video (B, L, *F), text (B, T, *F)?, k, group) -> (k*B, SUB + T, *F)``: every sub-sequence's reordered
video rows (padding zero-filled), then a copy of its item's text rows, which is what ``npu_fusion_attention`` reads.
``joint_restore(x, k, group, L, T) -> (B, L, *F)``: the video rows of that layout in natural order.

The schemas, fakes and a reference kernel (any device) are defined here; the NPU library registers the AscendC kernel
(``csrc/npu/host.cpp``), which writes the layout in one pass. They run below the attention op's autograd, so they
have no autograd of their own.
"""
from __future__ import annotations

import torch

from .. import reference
from ..index import sub_length

_lib = torch.library.Library("skiparse_npu", "DEF")
_lib.define("joint_reorder(Tensor video, Tensor? text, int sparsity, bool group) -> Tensor")
_lib.define("joint_restore(Tensor x, int sparsity, bool group, int length, int text_length) -> Tensor")


def _joint_reorder(video, text, sparsity, group):
    x = reference.reorder(video, sparsity, group)
    return x if text is None else torch.cat([x, text.repeat(sparsity, *([1] * (text.dim() - 1)))], dim=1)


def _joint_restore(x, sparsity, group, length, text_length):
    return reference.restore(x[:, : sub_length(length, sparsity)], sparsity, group, length).contiguous()


_lib.impl("joint_reorder", _joint_reorder, "CompositeExplicitAutograd")
_lib.impl("joint_restore", _joint_restore, "CompositeExplicitAutograd")


@torch.library.register_fake("skiparse_npu::joint_reorder")
def _joint_reorder_fake(video, text, sparsity, group):
    rows = sub_length(video.shape[1], sparsity) + (0 if text is None else text.shape[1])
    return video.new_empty((sparsity * video.shape[0], rows, *video.shape[2:]))


@torch.library.register_fake("skiparse_npu::joint_restore")
def _joint_restore_fake(x, sparsity, group, length, text_length):
    return x.new_empty((x.shape[0] // sparsity, length, *x.shape[2:]))

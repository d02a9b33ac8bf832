"""The Triton launchers as the CUDA kernels of ``torch.ops.skiparse``.

Schemas, fake kernels and autograd are in ``skiparse/ops.py``: the same for every device.
"""
from __future__ import annotations

import torch

from .. import ops  # noqa: F401  (defines the schemas the kernels register against)
from . import attention, reorder

KERNELS = {
    "reorder": reorder.reorder,
    "restore": reorder.restore,
    "attention": attention.forward,
    "attention_backward": attention.backward,
}

_lib = torch.library.Library("skiparse", "IMPL")
for _name, _fn in KERNELS.items():
    _lib.impl(_name, _fn, "CUDA")

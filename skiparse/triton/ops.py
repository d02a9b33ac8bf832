"""The Triton launchers as the CUDA kernels of ``torch.ops.skiparse``.

Schemas, fake kernels and autograd are in ``skiparse/ops.py``: the same for every device.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

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


@contextlib.contextmanager
def registered_for(dispatch_key: str) -> Iterator[None]:
    """Bind the launchers to another dispatch key inside the block (tests: ``"CPU"`` under ``TRITON_INTERPRET=1``,
    so that ``torch.ops.skiparse`` on CPU tensors runs the Triton kernels); the previous kernels come back after."""
    lib = torch.library.Library("skiparse", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
            for name, fn in KERNELS.items():
                lib.impl(name, fn, dispatch_key, allow_override=True)
        yield
    finally:
        lib._destroy()

"""The NPU kernels as the ``PrivateUse1`` kernels of ``torch.ops.skiparse`` (schemas, fakes and autograd are in
``skiparse/ops.py``, shared by every device). Import only after ``import torch_npu``."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import ops  # noqa: F401  (defines the schemas the kernels register against)
from . import attention

LIBRARY = Path(__file__).resolve().parents[1] / "lib" / "libskiparse_npu.so"

if not LIBRARY.exists():
    raise ImportError(
        f"{LIBRARY} is missing: skiparse was installed without its NPU kernels (the CANN toolkit was not found at "
        "build time); source <CANN>/set_env.sh, then reinstall skiparse"
    )
torch.ops.load_library(str(LIBRARY))  # reorder, restore and the joint-layout ops (csrc/npu/host.cpp)

_lib = torch.library.Library("skiparse", "IMPL")
_lib.impl("attention", attention.forward, "PrivateUse1")
_lib.impl("attention_backward", attention.backward, "PrivateUse1")

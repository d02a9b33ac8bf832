"""Triton backend (NVIDIA GPUs). Its kernels are not part of this release yet; the probe says so."""
from __future__ import annotations

import torch


def probe() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "no CUDA device (and the Triton kernels are not part of this release yet)"
    return False, "the Triton kernels are not part of this release yet"

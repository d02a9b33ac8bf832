"""Triton backend (NVIDIA GPUs): the kernels of ``skiparse.triton``, registered as the CUDA kernels of the ops."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os

import torch


def probe() -> tuple[bool, str]:
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install 'skiparse[triton]')"
    version = importlib.metadata.version("triton")
    if not torch.cuda.is_available():
        why = f"no CUDA device (triton {version} is installed)"
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            why += "; TRITON_INTERPRET=1 runs the kernels on CPU tensors for tests, it is not a backend"
        return False, why
    importlib.import_module("skiparse.triton.ops")  # registers the CUDA kernels
    major, minor = torch.cuda.get_device_capability()
    return True, f"triton {version} on {torch.cuda.get_device_name()} (sm_{major}{minor})"

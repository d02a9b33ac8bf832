"""Ascend NPU backend. Imported lazily: ``import torch_npu`` fails on machines without the CANN toolkit."""
from __future__ import annotations

import importlib


def probe() -> tuple[bool, str]:
    try:
        importlib.import_module("torch_npu")
    except Exception as e:  # ImportError, or OSError from a CANN library  # noqa: BLE001
        return False, f"torch_npu is not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e})"
    return False, "torch_npu found, but the AscendC kernels are not part of this release yet"

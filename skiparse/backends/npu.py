"""Ascend NPU backend. Imported lazily: ``import torch_npu`` fails on machines without the CANN toolkit."""
from __future__ import annotations

import importlib


def probe() -> tuple[bool, str]:
    try:
        torch_npu = importlib.import_module("torch_npu")
    except Exception as e:  # ImportError, or OSError from a CANN library  # noqa: BLE001
        return False, f"torch_npu is not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e})"
    try:
        importlib.import_module("skiparse.npu.ops")  # registers the PrivateUse1 kernels
    except ImportError as e:
        return False, f"torch_npu {torch_npu.__version__} found, but {e}"
    if not torch_npu.npu.is_available():
        return False, f"torch_npu {torch_npu.__version__} and the NPU kernels are installed, but no NPU is visible"
    return True, f"AscendC reorder/restore + npu_fusion_attention on {torch_npu.npu.get_device_name(0)}"

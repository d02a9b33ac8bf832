"""CPU backend: the fused C++ kernels of ``skiparse._C`` (registered as the CPU kernels of ``torch.ops.skiparse``)."""
from __future__ import annotations

import functools
import importlib

import torch


def probe() -> tuple[bool, str]:
    from .. import ops  # noqa: F401  (schemas must exist before the kernels register against them)

    try:
        ext = importlib.import_module("skiparse._C")
    except ImportError as e:
        return False, f"the C++ extension skiparse._C is not built or failed to load ({e}); reinstall with a compiler"
    missing = ext.required_isa_missing()
    if missing:
        return False, f"skiparse._C was built for {missing}, which this CPU lacks"
    return True, f"skiparse._C ({ext.build_info()}; {torch.get_num_threads()} threads)"


@functools.cache  # the CPU and its caps are fixed for the process
def native_low_precision(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` (bf16/fp16) GEMMs natively: AMX (or AVX512-BF16) through oneDNN, as
    ``ONEDNN_MAX_CPU_ISA`` caps it. False for other dtypes and without the extension."""
    if dtype not in (torch.bfloat16, torch.float16) or not probe()[0]:
        return False
    return importlib.import_module("skiparse._C").native_lowp(dtype == torch.float16)

"""CPU backend: the fused C++ kernels of ``skiparse._C`` (registered as the CPU kernels of ``torch.ops.skiparse``)."""
from __future__ import annotations

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

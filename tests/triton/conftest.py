"""Triton tests run under the interpreter on CPU tensors (``TRITON_INTERPRET=1`` is set by ``tests/conftest.py``).

The ``triton_kernels`` fixture binds the launchers that ``skiparse.triton.ops`` registers for CUDA to the CPU
dispatch key for the duration of a test, so ``torch.ops.skiparse`` on CPU tensors runs the Triton kernels.

The interpreter stores bfloat16 as raw uint16 and its ``tl.dot`` multiplies those bit patterns
(triton-lang/triton#11584; unsupported upstream). Here its dot widens bfloat16 operands to float32 first, which is
what the tensor cores compute (exact bf16 products, fp32 accumulation), so the bf16 kernels can be checked.
"""
import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("triton") is None:  # the triton extra is not installed: nothing here can run
    collect_ignore_glob = ["test_*.py"]
elif os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    import triton.language as tl
    from triton.runtime import interpreter

    _dot = interpreter.InterpreterBuilder.create_dot

    def _widen(x):
        if x.dtype != tl.bfloat16:
            return x
        return interpreter.TensorHandle((x.data.astype(np.uint32) << 16).view(np.float32), tl.float32)

    def _create_dot(self, a, b, d, *args):
        return _dot(self, _widen(a), _widen(b), d, *args)

    interpreter.InterpreterBuilder.create_dot = _create_dot


def pytest_configure(config):
    config.addinivalue_line("markers", "configs: every shipped GPU configuration run under the interpreter")


@pytest.fixture
def triton_kernels():
    from skiparse.triton.ops import registered_for

    with registered_for("CPU"):  # the C++ CPU kernels are back after the test
        yield

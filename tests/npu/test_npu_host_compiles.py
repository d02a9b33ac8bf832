"""The NPU host glue (csrc/npu/host.cpp) compiles against torch's headers and stubs of the CANN / torch_npu entry
points it calls: a syntax and type check of the code that only an NPU machine can build and run."""
import shutil
import subprocess
from pathlib import Path

import pytest
from torch.utils.cpp_extension import include_paths

ROOT = Path(__file__).resolve().parents[2]
CXX = shutil.which("g++") or shutil.which("c++")


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
def test_host_glue_compiles_against_the_stubs():
    cmd = [CXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
           f"-I{ROOT / 'csrc/npu/stubs'}", f"-I{ROOT / 'csrc/npu'}",
           *[f"-isystem{p}" for p in include_paths()], str(ROOT / "csrc/npu/host.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]

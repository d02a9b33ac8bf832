"""The NPU host glue (csrc/npu/host.cpp) compiles against torch's headers and stubs of the CANN / torch_npu entry
points it calls: a syntax and type check of the code that only an NPU machine can build and run. Where torch_npu's
own headers are at hand (an installed torch_npu, or SKIPARSE_TORCH_NPU_INCLUDE, with SKIPARSE_TORCH_INCLUDE for the
matching torch), it also compiles against them, with stubs only for what CANN itself provides or generates."""
import os
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
from torch.utils.cpp_extension import include_paths

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "csrc/npu/stubs"
CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler")


def compile_host(*includes):
    cmd = [CXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc/npu'}", *includes,
           str(ROOT / "csrc/npu/host.cpp")]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_host_glue_compiles_against_the_stubs():
    result = compile_host(f"-I{STUBS}", *[f"-isystem{p}" for p in include_paths()])
    assert result.returncode == 0, result.stderr[-4000:]


def _torch_npu_include():
    if os.environ.get("SKIPARSE_TORCH_NPU_INCLUDE"):
        return Path(os.environ["SKIPARSE_TORCH_NPU_INCLUDE"])
    spec = find_spec("torch_npu")
    return Path(spec.submodule_search_locations[0]) / "include" if spec and spec.submodule_search_locations else None


@pytest.mark.skipif(_torch_npu_include() is None, reason="no torch_npu headers (install torch_npu or set "
                    "SKIPARSE_TORCH_NPU_INCLUDE)")  # fmt: skip
def test_host_glue_compiles_against_torch_npu_headers(tmp_path):
    cann = tmp_path / "cann"  # the CANN-generated launch headers and CANN's platform header, nothing of torch_npu
    cann_headers = ("aclrtlaunch_skiparse_reorder.h", "aclrtlaunch_skiparse_restore.h",
                    "tiling/platform/platform_ascendc.h")
    for header in cann_headers:
        (cann / header).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(STUBS / header, cann / header)
    npu = _torch_npu_include()
    torch_dirs = ([Path(os.environ["SKIPARSE_TORCH_INCLUDE"]), Path(os.environ["SKIPARSE_TORCH_INCLUDE"]) /
                   "torch/csrc/api/include"] if os.environ.get("SKIPARSE_TORCH_INCLUDE") else include_paths())
    result = compile_host(f"-I{cann}", f"-isystem{npu}", f"-isystem{npu / 'third_party/acl/inc'}",
                          *[f"-isystem{p}" for p in torch_dirs])
    assert result.returncode == 0, result.stderr[-4000:]

"""The CPU model of AscendC (csrc/npu/stubs/kernel_operator.h) rejects what CANN rejects, so that the kernel twin
tests catch it: each case is a tiny kernel that is correct except for one defect, next to the same kernel without it
(which must compile and run), so a check that never fires fails here."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to build the model")

# One core copies `len` bytes GM -> UB -> GM through a queue buffer of `buffer` bytes, on a UB of `ub` bytes.
KERNEL = """
#include <cstdio>
#include <exception>
#include <vector>
#include "kernel_operator.h"

extern "C" __global__ __aicore__ void tiny(GM_ADDR src, GM_ADDR dst) {
  {declare}
  AscendC::TPipe pipe;
  AscendC::TQueBind<AscendC::TPosition::VECIN, AscendC::TPosition::VECOUT, 1> que;
  pipe.InitBuffer(que, 1, {buffer});
  AscendC::GlobalTensor<uint8_t> in, out;
  in.SetGlobalBuffer(src, {len});
  out.SetGlobalBuffer(dst, {len});
  AscendC::LocalTensor<uint8_t> buf = que.AllocTensor<uint8_t>();
  AscendC::DataCopyPad(buf, in, AscendC::DataCopyExtParams{1, {len}, 0, 0, 0},
                       AscendC::DataCopyPadExtParams<uint8_t>{false, 0, 0, 0});
  que.EnQue(buf);
  {const}AscendC::LocalTensor<uint8_t> done = que.DeQue<uint8_t>();
  AscendC::DataCopyPad(out, done, AscendC::DataCopyExtParams{1, {len}, 0, 0, 0});
  que.FreeTensor(done);
}

int main() {
  std::vector<uint8_t> src({len}, 7), dst({len}, 0);
  AscendC::twin::ub_bytes = {ub};
  AscendC::twin::start_core(0);
  try {
    tiny(src.data(), dst.data());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\\n", e.what());
    return 1;
  }
  return dst == src ? 0 : 3;
}
"""
GOOD = dict(declare="KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);", buffer=1024, len=64, ub=192 * 1024, const="")


def build(tmp_path: Path, **change):
    """Compiles the tiny kernel with `change` applied; returns the compiler's result and the executable."""
    source = KERNEL
    for key, value in {**GOOD, **change}.items():
        source = source.replace("{" + key + "}", str(value))
    cpp, exe = tmp_path / "tiny.cpp", tmp_path / "tiny"
    cpp.write_text(source)
    result = subprocess.run([CXX, "-std=c++17", "-O0", "-Wall", "-Werror", f"-I{ROOT / 'csrc/npu/stubs'}", "-o",
                             str(exe), str(cpp)], capture_output=True, text=True)
    return result, exe


def run(tmp_path: Path, **change):
    result, exe = build(tmp_path, **change)
    assert result.returncode == 0, result.stderr[-3000:]
    return subprocess.run([str(exe)], capture_output=True, text=True)


def test_the_correct_kernel_runs(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_kernel_that_does_not_declare_its_type_fails(tmp_path):
    result = run(tmp_path, declare="")
    assert result.returncode == 1 and "KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY)" in result.stderr


def test_a_kernel_declared_mix_fails(tmp_path):
    result = run(tmp_path, declare="KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIC_1_2);")
    assert result.returncode == 1 and "vector-only" in result.stderr


def test_free_tensor_of_a_const_tensor_does_not_compile(tmp_path):
    """CANN's TQueBind::FreeTensor takes ``LocalTensor<T>&``: freeing a const tensor is a compile error."""
    result, _ = build(tmp_path, const="const ")
    assert result.returncode != 0 and "FreeTensor" in result.stderr


@pytest.mark.parametrize("length,ok", [(2097151, True), (2097152, False)])
def test_block_length_beyond_2097151_bytes_fails(tmp_path, length, ok):
    """DataCopyExtParams::blockLen is at most 2^21 - 1 bytes (on a UB large enough to hold the block)."""
    result = run(tmp_path, len=length, buffer=2097152, ub=4 * 1024 * 1024)
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1 and "blockLen 2097152 beyond its limit" in result.stderr


@pytest.mark.parametrize("ub", [192 * 1024, 16 * 1024])
@pytest.mark.parametrize("over,ok", [(0, True), (32, False)])
def test_buffers_in_the_reserved_top_8_kib_fail(tmp_path, ub, over, ok):
    """A TPipe hands out the UB below its top 8 KiB (the 910B: 184 of 192 KiB); the rest is the API's scratch."""
    result = run(tmp_path, buffer=ub - 8 * 1024 + over, ub=ub)
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1 and "reserved API scratch" in result.stderr

"""The Ascend NPU tiling (csrc/npu/tiling.h): compiled with the system compiler, checked against the Python index
math. Runs without CANN: the work partition is plain C++ shared with the (not compilable here) device code."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from skiparse.index import index_table, sub_length

ROOT = Path(__file__).resolve().parents[2]
CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to build the tiling report")
RESERVED = 8 * 1024  # the top of the UB kept for AscendC's own scratch (910B: 192 KiB UB, 184 KiB for TPipe buffers)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exe = tmp_path_factory.mktemp("npu") / "tiling_report"
    subprocess.run([CXX, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                    str(ROOT / "csrc/npu/tiling_report.cpp")], check=True)

    def run(*args):
        out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
        if out.returncode:
            raise ValueError(out.stderr.strip())
        return json.loads(out.stdout)

    return run


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("B,L", [(1, 1), (2, 7), (1, 97), (3, 130)])
@pytest.mark.parametrize("T", [0, 5])
def test_partition_covers_every_row_once_with_the_index_math(report, k, group, B, L, T):
    C, elem, ub, cores = 24, 2, RESERVED + 1024, 5
    t = report(B, L, T, C, k, int(group), elem, ub, cores)
    sub = sub_length(L, k)
    assert t["sub_length"] == sub and t["total_rows"] == k * B * (sub + T)
    rows = [r for begin, end in t["ranges"] for r in range(begin, end)]
    assert rows == list(range(t["total_rows"])) and 1 <= t["cores"] <= cores
    table = index_table(L, k, group)  # (k, SUB) natural rows, -1 = padding
    rows_of = table.unsqueeze(1)  # (k, 1, SUB): every batch item b reads rows b*L + natural row
    video = torch.where(rows_of >= 0, rows_of + L * torch.arange(B).view(1, B, 1), -1)
    text = (torch.arange(T) + T * torch.arange(B).view(B, 1)).expand(k, B, T)  # every copy: item b's text rows
    none = torch.full((k, B, T), -1), torch.full((k, B, sub), -1)
    # joint row (s*B + b)*(SUB + T) + pos: video positions first, then the text copy
    assert t["sources"] == torch.cat([video, none[0]], dim=2).reshape(-1).tolist()
    assert t["text_sources"] == torch.cat([none[1], text], dim=2).reshape(-1).tolist()
    assert t["elem_bytes"] == elem
    assert_fits_the_ub(t, ub)


def assert_fits_the_ub(t, ub):
    """Two transfer buffers (double buffering) and one zero row, every UB row in whole 32-byte blocks, below the
    reserved top of a UB of `ub` bytes."""
    pitch = t["row_pitch"]
    assert t["ub_budget"] == ub - RESERVED
    assert pitch % 32 == 0 and t["cols_per_chunk"] * t["elem_bytes"] <= pitch
    assert (2 * t["rows_per_chunk"] + 1) * pitch <= ub - RESERVED and 1 <= t["rows_per_chunk"] <= 4095


def test_wide_rows_are_split_in_32_byte_multiples(report):
    t = report(1, 10, 0, 5000, 2, 0, 4, RESERVED + 8192, 8)  # a 20,000-byte row, 8 KiB of UB
    assert t["rows_per_chunk"] == 1 and t["cols_per_chunk"] * 4 % 32 == 0 and t["cols_per_chunk"] < 5000
    assert_fits_the_ub(t, RESERVED + 8192)


@pytest.mark.parametrize("C,elem", [(1, 2), (3, 2), (3, 4), (8, 4), (17, 2)])
def test_narrow_rows_take_a_whole_ub_block_each(report, C, elem):
    t = report(2, 50, 0, C, 3, 1, elem, RESERVED + 1024, 4)
    assert t["cols_per_chunk"] == C and t["row_pitch"] == -(-C * elem // 32) * 32
    assert_fits_the_ub(t, RESERVED + 1024)


def test_rows_per_transfer_stay_within_the_copy_limit(report):
    t = report(1, 100000, 0, 1, 2, 0, 2, 512 * 1024, 40)  # 16,383 one-block rows would fit
    assert t["rows_per_chunk"] == 4095


@pytest.mark.parametrize("C", [600000, 1048576])  # rows of 2.4 and 4 MiB: longer than one copy's 2,097,151 bytes
def test_row_parts_stay_within_the_block_length_limit(report, C):
    t = report(1, 4, 0, C, 2, 0, 4, 64 * 1024 * 1024, 4)  # a UB far larger than any NPU's
    assert t["rows_per_chunk"] == 1 and 0 < t["cols_per_chunk"] * 4 <= 2097151 and t["cols_per_chunk"] < C
    assert t["cols_per_chunk"] * 4 % 32 == 0


def test_bad_sizes_are_refused(report):
    with pytest.raises(ValueError, match="must be >= 1"):
        report(0, 10, 0, 8, 2, 0, 2, 1024, 4)
    with pytest.raises(ValueError, match="at least 96 bytes above the 8192-byte API reserve"):
        report(1, 10, 0, 8, 2, 0, 2, RESERVED + 64, 4)


# GetCoreMemSize(UB) on a 910B: 192 KiB less the 256 bytes CANN keeps for its matmul server; and the full 192 KiB.
@pytest.mark.parametrize("ub", [192 * 1024 - 256, 192 * 1024])
@pytest.mark.parametrize("C,elem", [(8, 4), (100, 2), (5000, 4)])
def test_the_910b_ub_is_filled_up_to_its_184_kib_for_buffers(report, ub, C, elem):
    """Narrow rows fill the budget (one more row per buffer would not fit); wide rows are split to fit it."""
    t = report(1, 100000, 0, C, 2, 0, elem, ub, 40)
    assert_fits_the_ub(t, ub)
    assert t["ub_budget"] <= 184 * 1024
    pitch = t["row_pitch"]
    if t["rows_per_chunk"] > 1:
        assert (2 * t["rows_per_chunk"] + 3) * pitch > ub - RESERVED
    else:
        assert 3 * (t["cols_per_chunk"] * elem + 32) > ub - RESERVED

"""The AscendC reorder/restore kernels (csrc/npu/kernels/copy_rows.cpp) run on the host: compiled with the system
compiler against a CPU model of the AscendC calls they make (csrc/npu/stubs/kernel_operator.h), every AI core in
turn, and compared byte for byte with the PyTorch reference. Runs without CANN; the model also fails on UB overflow,
unaligned UB rows, out-of-bounds copies and queue or flag misuse."""
import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from skiparse import reference
from skiparse.index import sub_length

ROOT = Path(__file__).resolve().parents[2]
NPU = ROOT / "csrc/npu"
CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to build the kernel twin")

# The kernels move bytes: any dtype of that size is the same to them (1 byte: the attention's bool key masks).
DTYPES = {1: torch.int8, 2: torch.int16, 4: torch.int32}
# The twin's UB: its top RESERVED bytes are AscendC's scratch (the model fails if a buffer reaches into them), below
# that 256 bytes (a few rows per transfer, and rows of 100 elements split into 64-byte parts plus a short last one)
# or 8192 bytes (up to 127 rows per transfer, often a core's whole range).
RESERVED = 8 * 1024
UB_SIZES = (RESERVED + 256, RESERVED + 8192)
CORES = (1, 5, 1000)  # one core, several, and more cores than rows (one row each)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    exe = tmp_path_factory.mktemp("npu") / "kernels_cpu_twin"
    subprocess.run([CXX, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{NPU / 'stubs'}", f"-I{NPU}",
                    "-o", str(exe), str(NPU / "kernels_cpu_twin.cpp"), str(NPU / "kernels/copy_rows.cpp")],
                   check=True)

    def run(op, x, k, group, B, L, ub, cores, text=None, T=0):
        """reorder: x (B, L, C) [+ text (B, T, C)] -> joint rows; restore: x joint rows -> (B, L, C)."""
        args = [op, B, L, T, x.shape[-1], k, int(group), x.element_size(), ub, cores]
        data = x.contiguous().numpy().tobytes() + (b"" if text is None else text.contiguous().numpy().tobytes())
        out = subprocess.run([str(exe), *map(str, args)], input=data, capture_output=True)
        assert out.returncode == 0, f"{op} {args}: {out.stderr.decode().strip()}"
        return torch.frombuffer(bytearray(out.stdout), dtype=x.dtype)

    return run


def random_rows(*shape, elem):
    info = torch.iinfo(DTYPES[elem])
    return torch.randint(info.min, info.max + 1, shape, dtype=DTYPES[elem])


def cases(k):
    # L not a multiple of k^2 (so there is padding), including L = 1 where nearly every row is padding.
    for B, L, C, ub, cores in itertools.product((1, 2), (1, 2 * k * k + 1, 23), (3, 8, 100), UB_SIZES, CORES):
        if L % (k * k):
            yield B, L, C, ub, cores


@pytest.mark.parametrize("elem", [2, 4])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_reorder_matches_the_reference(twin, k, group, elem):
    for B, L, C, ub, cores in cases(k):
        x = random_rows(B, L, C, elem=elem)
        expected = reference.reorder(x, k, group)
        got = twin("reorder", x, k, group, B, L, ub, cores).view(expected.shape)
        assert torch.equal(got, expected), f"B={B} L={L} C={C} ub={ub} cores={cores}"


@pytest.mark.parametrize("elem", [2, 4])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_restore_matches_the_reference(twin, k, group, elem):
    for B, L, C, ub, cores in cases(k):
        y = random_rows(k * B, sub_length(L, k), C, elem=elem)  # padding rows hold garbage: restore must skip them
        expected = reference.restore(y, k, group, L)
        got = twin("restore", y, k, group, B, L, ub, cores).view(expected.shape)
        assert torch.equal(got, expected), f"B={B} L={L} C={C} ub={ub} cores={cores}"


@pytest.mark.parametrize("elem", [1, 2])
@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("k", [2, 3])
def test_joint_layout_repeats_the_text_after_every_sub_sequence(twin, k, group, elem):
    """reorder with text -> (kB, SUB + T, C): the reordered video, then item b's text in every copy; restore reads the
    video rows back from that layout and skips the text."""
    for B, L, C, ub, cores in cases(k):
        T = 3
        x, text = random_rows(B, L, C, elem=elem), random_rows(B, T, C, elem=elem)
        expected = torch.cat([reference.reorder(x, k, group), text.repeat(k, 1, 1)], dim=1)
        joint = twin("reorder", x, k, group, B, L, ub, cores, text=text, T=T).view(expected.shape)
        assert torch.equal(joint, expected), f"B={B} L={L} C={C} ub={ub} cores={cores}"
        back = twin("restore", joint, k, group, B, L, ub, cores, T=T).view(x.shape)
        assert torch.equal(back, x), f"B={B} L={L} C={C} ub={ub} cores={cores}"


def test_restore_inverts_reorder_with_a_wide_row(twin):
    x = random_rows(2, 37, 1000, elem=2)  # 2,000-byte rows in 32-byte-multiple parts of a 4 KiB budget
    y = twin("reorder", x, 3, True, 2, 37, RESERVED + 4096, 7).view(6, sub_length(37, 3), 1000)
    assert torch.equal(twin("restore", y, 3, True, 2, 37, RESERVED + 4096, 7).view(x.shape), x)


@pytest.mark.parametrize("C,elem", [(8, 4), (1000, 2), (30000, 4)])
def test_the_kernels_run_in_the_910b_ub_without_touching_its_reserve(twin, C, elem):
    """The whole 192 KiB UB: the tiling fills the 184 KiB below the reserve (narrow rows: thousands per transfer;
    120,000-byte rows: split in parts), and the model fails any buffer that reaches into the top 8 KiB."""
    x = random_rows(1, 5000, C, elem=elem) if C < 30000 else random_rows(1, 5, C, elem=elem)
    L = x.shape[1]
    y = twin("reorder", x, 2, False, 1, L, 192 * 1024, 3).view(2, sub_length(L, 2), C)
    assert torch.equal(y, reference.reorder(x, 2, False))
    assert torch.equal(twin("restore", y, 2, False, 1, L, 192 * 1024, 3).view(x.shape), x)


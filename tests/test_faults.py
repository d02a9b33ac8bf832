"""Faults: calls that once killed the process (SIGFPE, SIGSEGV, the OOM killer) now raise a clear error, and
conv3d_3x3's documented behaviour on non-finite input.

The crash repros run in a subprocess, so that a regression fails its tests instead of killing pytest.
"""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import skiparse
from skiparse_testing import requires_cpu_ext


def outcomes_in_subprocess(codes: list[str]) -> tuple[list[str | None], str]:
    """Runs each code in turn in one fresh interpreter, catching exceptions: (``"Error: message"``, or
    ``"no error"``, per code, ``None`` from the one that killed the interpreter on; the interpreter's stderr)."""
    script = ["import torch, skiparse"]
    for i, code in enumerate(codes):
        script += ["try:", textwrap.indent(code, "    "), "except Exception as e:",
                   f"    print({i}, f'{{type(e).__name__}}: {{e}}'.splitlines()[0], flush=True)",
                   "else:", f"    print({i}, 'no error', flush=True)"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", "\n".join(script)], capture_output=True, text=True, timeout=600)
    outcomes: list[str | None] = [None] * len(codes)
    for line in proc.stdout.splitlines():
        i, outcome = line.split(" ", 1)
        outcomes[int(i)] = outcome
    return outcomes, f"exit code {proc.returncode} (negative: killed by a signal)\n{proc.stderr[-2000:]}"


def check_outcome(outcomes, index, error, message):
    got, why = outcomes
    assert got[index] is not None, f"this call or an earlier one of its list killed the interpreter: {why}"
    assert got[index].startswith(f"{error}: {message}"), got[index]


CRASHES = [  # (code, exception, message); each used to kill the process
    ("skiparse.reorder(torch.randn(2, 10, 3), sparsity=2**32)", "ValueError",
     "sparsity=4294967296 is too large for x of shape (2, 10, 3)"),
    ("q = torch.randn(1, 10, 2, 8)\nskiparse.skiparse_attention(q, q, q, sparsity=2**31)", "ValueError",  # bad_alloc
     "sparsity=2147483648 is too large for q of shape (1, 10, 2, 8)"),
    # F.conv3d returns a (1, 0, 3, 32, 32) tensor here, not the (1, 4, 3, 32, 32) bias broadcast: nothing to match.
    ("skiparse.conv3d_3x3(torch.randn(1, 0, 3, 32, 32), torch.randn(4, 0, 1, 3, 3))", "ValueError",
     "x must have at least one channel (B, C_in >= 1, T, H, W), got shape (1, 0, 3, 32, 32)"),
    # The reference pads L = 10 to 10^8 rows: ~16 TB of copies and scores, more than any test machine has.
    ("q = torch.randn(1, 10, 2, 64)\n"
     "with skiparse.use_backend('reference'): skiparse.skiparse_attention(q, q, q, sparsity=10**4)", "MemoryError",
     "the reference backend pads L=10 to a multiple of sparsity^2 = 100000000"),
]
OP_CRASHES = [  # direct op calls into the CPU kernels
    ("torch.ops.skiparse.reorder(torch.randn(2, 10, 3), 2**33, False)", "RuntimeError",
     "skiparse.reorder: sparsity=8589934592 is too large for x of shape (2, 10, 3)"),
    ("q = torch.randn(1, 10, 2, 8)\n"
     "torch.ops.skiparse.attention(q, q, q, None, None, None, None, None, 2**31, False, 1.0)",
     "RuntimeError", "skiparse.attention: sparsity=2147483648 is too large for q of shape (1, 10, 2, 8)"),
    ("q = torch.randn(1, 10, 2, 8)\n"
     "torch.ops.skiparse.attention(q, q, q, None, None, None, None, None, 2**32, False, 1.0)",
     "RuntimeError", "skiparse.attention: sparsity=4294967296 is too large for q of shape (1, 10, 2, 8)"),
    ("torch.ops.skiparse.restore(torch.randn(2, 4, 3), 2**32, False, 10)", "RuntimeError",
     "skiparse.restore: x dim 0 must be k*B with k = sparsity = 4294967296, got 2"),
    ("torch.ops.skiparse.restore(torch.zeros(1, 4, 3).expand(2**32, 4, 3), 2**32, False, 10)", "RuntimeError",
     "skiparse.restore: sparsity=4294967296 is too large for the output of shape (1, 10, 3)"),
    ("torch.ops.skiparse.conv3d_3x3(torch.randn(1, 0, 3, 32, 32), torch.randn(4, 0, 1, 3, 3), None)", "RuntimeError",
     "skiparse.conv3d_3x3: input must have at least one channel (B, C_in >= 1, T, H, W), got shape (1, 0, 3, 32, 32)"),
    ("torch.ops.skiparse.conv3d_3x3(torch.randn(2, 5, 4, 9, 7), torch.randn(7, 5, 0, 3, 3), None)", "RuntimeError",
     "skiparse.conv3d_3x3: weight's temporal size kt=0 must be in 1..T=4 (the frames of context and input)"),
    ("q = torch.randn(1, 10, 2, 8); tq = torch.randn(1, 3, 2, 8)\n"
     "torch.ops.skiparse.attention(q, q, q, tq, None, None, None, None, 2, False, 0.35)", "RuntimeError",
     "skiparse.attention: text_q, text_k and text_v go together: got text_q without text_k, text_v"),
    ("q = torch.randn(1, 10, 2, 8); tq = torch.randn(1, 3, 2, 8)\n"
     "torch.ops.skiparse.attention(q, q, q, tq, tq, None, None, None, 2, False, 0.35)", "RuntimeError",
     "skiparse.attention: text_q, text_k and text_v go together: got text_q, text_k without text_v"),
]


@pytest.fixture(scope="module")
def public_outcomes():
    return outcomes_in_subprocess([code for code, _, _ in CRASHES])


@pytest.fixture(scope="module")
def op_outcomes():
    return outcomes_in_subprocess([code for code, _, _ in OP_CRASHES])


@pytest.mark.parametrize("index", range(len(CRASHES)), ids=[c.splitlines()[-1][:60] for c, _, _ in CRASHES])
def test_public_call_that_crashed_raises(public_outcomes, index):
    check_outcome(public_outcomes, index, *CRASHES[index][1:])


@requires_cpu_ext
@pytest.mark.parametrize("index", range(len(OP_CRASHES)), ids=[c.splitlines()[-1][:60] for c, _, _ in OP_CRASHES])
def test_op_call_that_crashed_raises(op_outcomes, index):
    check_outcome(op_outcomes, index, *OP_CRASHES[index][1:])


@requires_cpu_ext
def test_cpu_backend_answers_the_same_call_without_padding():
    """The cpu kernels never pad; with k >= L every token is alone in its sub-sequence and attends to itself."""
    q, k, v = torch.randn(3, 1, 10, 2, 8, dtype=torch.float64).unbind(0)
    with skiparse.use_backend("cpu"):
        out, _ = skiparse.skiparse_attention(q, k, v, sparsity=10**4)
    torch.testing.assert_close(out, v)


# ----------------------------------------------------------------------------------- conv3d_3x3, non-finite input
def winograd_tiles_touched(H, W, h, w):
    """(H, W) mask of the 4x4 Winograd output tiles whose 6x6 input tile (padding 1) holds input pixel (h, w)."""
    mask = torch.zeros(H, W, dtype=torch.bool)
    for th in range(0, H, 4):
        for tw in range(0, W, 4):
            if th - 1 <= h <= th + 4 and tw - 1 <= w <= tw + 4:
                mask[th:th + 4, tw:tw + 4] = True
    return mask


@requires_cpu_ext
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("h,w", [(10, 13), (0, 0), (12, 31)])  # inside, corner, on a tile edge
def test_conv3d_3x3_non_finite_input_surfaces_within_its_tiles(value, h, w):
    """README: a non-finite pixel makes non-finite every output F.conv3d makes non-finite, and more, as NaN, but only
    in the output tiles whose input tiles hold it; the rest of the output is the conv's."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 3, 32, 32, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 8, 3, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    x[0, 2, 1, h, w] = value
    assert skiparse.api.winograd_pays_off(x.shape, weight.shape)
    ours, ref = skiparse.conv3d_3x3(x, weight, bias), F.conv3d(x, weight, bias, padding=(0, 1, 1))
    bad, ref_bad = ~torch.isfinite(ours), ~torch.isfinite(ref)
    assert ref_bad.any() and not (ref_bad & ~bad).any()  # every output F.conv3d spoils is spoilt here too
    assert not (bad & ~winograd_tiles_touched(32, 32, h, w)).any()
    assert ours[bad].isnan().all()  # inf too ends as NaN (inf - inf in the transforms)
    torch.testing.assert_close(ours[~bad], ref[~bad])

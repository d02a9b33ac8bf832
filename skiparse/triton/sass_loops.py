"""Loops of a compiled kernel's SASS, for ``python -m skiparse.triton.aot --loop-report``.

A flash-attention program spends its time in its key loop: one trip per key tile, so the loop's length in SASS
instructions is a static proxy for the issue time per tile. ``nvdisasm`` (shipped in the Triton wheel) prints the
cubin with labels; a loop is a label followed, later in the code, by a branch back to it. Its length counts every
instruction from the label through that branch. The *main loop* is the first loop that issues matrix instructions
(HMMA on sm_80, HGMMA on sm_90): the video key loop of the Skiparse kernels (the text key loop comes after it) and
the only key loop of the dense baseline. A partial last tile peeled out of the loop is not part of it.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import NamedTuple

_LABEL = re.compile(r"^(\.L_x_\d+):")
_INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")
_BRANCH = re.compile(r"\bBRA\b.*?`?\((\.L_x_\d+)\)")
_MMA = re.compile(r"\b(HMMA|HGMMA|WGMMA)\b")


class Loop(NamedTuple):
    first: int  # index of its first instruction in the kernel
    instructions: int  # from the label through the backward branch
    mma: int  # matrix instructions among them


def disassemble(cubin: bytes) -> str:
    """The SASS of ``cubin`` with branch labels (``nvdisasm -c``, from the Triton wheel)."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, "-c", f.name], capture_output=True, text=True, check=True).stdout


def loops(sass: str) -> list[Loop]:
    """Every loop (label ... backward branch to it) in program order of its branch."""
    labels: dict[str, int] = {}
    code: list[str] = []
    found = []
    for line in sass.splitlines():
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = len(code)
            continue
        ins = _INSTRUCTION.search(line)
        if not ins:
            continue
        branch = _BRANCH.search(ins.group(1))
        if branch and branch.group(1) in labels:
            first = labels[branch.group(1)]
            body = code[first:] + [ins.group(1)]
            found.append(Loop(first, len(body), sum(bool(_MMA.search(x)) for x in body)))
        code.append(ins.group(1))
    return found


def main_loop(sass: str) -> Loop:
    """The first loop that issues matrix instructions."""
    with_mma = sorted((x for x in loops(sass) if x.mma), key=lambda x: x.first)
    if not with_mma:
        raise ValueError("no loop with matrix instructions in this SASS")
    return with_mma[0]

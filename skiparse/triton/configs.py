"""Launch configurations per target (sm_80: A100 class, sm_90: H100 class) and the ahead-of-time compile specs.

The tile sizes are the ones whose resource reports (``python -m skiparse.triton.aot``) show no register spills and
a shared-memory footprint that leaves room for two resident programs per SM where the tile allows it. Under the
Triton interpreter (``TRITON_INTERPRET=1``, tests on CPU tensors) one small configuration is used so that tiny
test shapes still cross several tiles and autotuning does not time numpy.
"""
from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

import torch
import triton

ARCHS = (80, 90)
# Largest dynamic shared memory per block (bytes) that a kernel may request: A100 163 KiB, H100 227 KiB.
SHARED_LIMIT = {80: 166_912, 90: 232_448}


class KernelSpec(NamedTuple):
    """One kernel as ``python -m skiparse.triton.aot`` compiles it: every config, for every target."""

    name: str
    fn: Any  # the triton.JITFunction (not its autotuner)
    signature: dict[str, str]  # argument -> Triton type ("*bf16", "i32", "fp32", "constexpr")
    constexprs: dict[str, Any]  # fixed compile-time values besides the config's
    configs: dict[int, list[triton.Config]]  # arch -> configurations (for this spec's head dim)
    aligned: tuple[str, ...] = ()  # integer arguments that are multiples of 16 in real use (strides)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def current_arch() -> int:
    """The arch whose configs the autotuners use: the visible GPU's (capped to the tuned ones), else sm_80."""
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        cc = 10 * major + minor
        return max([a for a in ARCHS if a <= cc], default=ARCHS[0])
    return ARCHS[0]


def head_dim_class(head_dim: int) -> int:
    """Configs are tuned for D = 64 and D = 128; smaller head dims take the 64 set, larger the 128 set."""
    return 64 if head_dim <= 64 else 128


def pick(tuned: dict, interpreter: triton.Config, head_dim: int | None = None) -> list[triton.Config]:
    """The autotune list for this process: one small config under the interpreter, else the current arch's
    configurations, ``tuned[arch]`` or, for kernels tuned per head dim, ``tuned[arch][head_dim_class(head_dim)]``."""
    if interpreting():
        return [interpreter]
    per_arch = tuned[current_arch()]
    return per_arch if head_dim is None else per_arch[head_dim_class(head_dim)]


def cfg(num_warps: int, num_stages: int, **blocks: int) -> triton.Config:
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


def signature(fn, dtype: str, data=(), fp32=(), floats=()) -> dict[str, str]:
    """Triton argument types of ``fn`` for AOT compilation: pointers to ``dtype`` (``data``), fp32 tensors,
    fp32 scalars (``floats``), constexprs; every other argument is an i32 size or stride."""
    kinds = {**{n: f"*{dtype}" for n in data}, **{n: "*fp32" for n in fp32},
             **{n: "fp32" for n in floats}}
    return {p.name: "constexpr" if p.is_constexpr else kinds.get(p.name, "i32") for p in fn.params}


def strides(fn) -> tuple[str, ...]:
    """The stride arguments of ``fn`` (named ``s<tensor>_<dim>``). At launch the JIT specializes arguments that are
    multiples of 16 (head-dim strides of D = 64 or 128 are), which lets it vectorize the row loads; AOT does the
    same."""
    return tuple(p.name for p in fn.params if re.fullmatch(r"s[a-z]+_[a-z]", p.name))


# AOT coverage of the attention kernels: the head dims the model uses, the heavier (group) index math, both masks.
AOT_HEAD_DIMS = (64, 128)


def attention_aot_flags(head_dim: int, **segment: bool) -> dict[str, Any]:
    return dict(HEAD_DIM=head_dim, BLOCK_D=head_dim, GROUP=True, HAS_TMASK=True, HAS_VMASK=True, PRECISION="tf32",
                **segment)

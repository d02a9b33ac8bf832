"""``python -m skiparse.info``: which backends are on, and why the others are off."""
from __future__ import annotations

import platform

import torch

from . import __version__
from .backends import BACKENDS, requested, status
from .backends.cpu import native_low_precision


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``avx2``, ``avx512f``, ``amx_bf16``, ...) from /proc/cpuinfo; empty off Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_kernels() -> str:
    """The CPU kernels' ISA path and whether bf16/fp16 GEMMs run on AMX, or why the kernels are off."""
    ok, why = status("cpu")
    if not ok:
        return f"CPU kernels off: {why}"
    from . import _C

    amx = {name: native_low_precision(dtype) for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16))}
    return (f"CPU kernels: {_C.kernel_isa()} build (ATen capability {torch.backends.cpu.get_cpu_capability()}, "
            f"ATEN_CPU_CAPABILITY caps it); AMX: " +
            ", ".join(f"{n} {'on' if on else 'off'}" for n, on in amx.items()) +
            " (ONEDNN_MAX_CPU_ISA caps it; off: GEMMs in fp32)")


def report() -> str:
    lines = [
        f"skiparse {__version__} | torch {torch.__version__} | python {platform.python_version()} | "
        f"{platform.machine()} | {torch.get_num_threads()} threads",
        f"CPU: {cpu_model()}",
        cpu_kernels(),
        f"requested backend: {requested()} (SKIPARSE_BACKEND or skiparse.use_backend)",
    ]
    for name, backend in BACKENDS.items():
        ok, why = status(name)
        serves = backend.device_type or "any device"
        lines.append(f"  {name:<10} {'on ' if ok else 'off'}  [{serves}]  {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())

"""``python -m skiparse.info``: which backends are on, and why the others are off."""
from __future__ import annotations

import platform

import torch

from . import __version__
from .backends import BACKENDS, requested, status


def report() -> str:
    lines = [
        f"skiparse {__version__} | torch {torch.__version__} | python {platform.python_version()} | "
        f"{platform.machine()} | {torch.get_num_threads()} threads",
        f"requested backend: {requested()} (SKIPARSE_BACKEND or skiparse.use_backend)",
    ]
    for name, backend in BACKENDS.items():
        ok, why = status(name)
        serves = backend.device_type or "any device"
        lines.append(f"  {name:<10} {'on ' if ok else 'off'}  [{serves}]  {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())

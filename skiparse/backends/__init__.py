"""Backend registry and selection.

``SKIPARSE_BACKEND=auto|reference|cpu|triton|npu`` (read at every call) and :func:`use_backend` (per thread and
per asyncio task) choose how the public ops run. ``auto`` takes the best available backend for the tensors' device and falls back to the
PyTorch reference (with one warning) when that device has no compiled backend. A backend that is asked for by
name but cannot run raises, with the reason.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import warnings
from typing import Callable, Iterator, NamedTuple

import torch

from . import cpu, npu, triton


class Backend(NamedTuple):
    name: str
    device_type: str | None  # device it serves; None = any
    probe: Callable[[], tuple[bool, str]]  # -> (available, why)


BACKENDS = {
    "reference": Backend("reference", None, lambda: (True, "plain PyTorch (pad, rearrange, SDPA), always on")),
    "cpu": Backend("cpu", "cpu", cpu.probe),
    "triton": Backend("triton", "cuda", triton.probe),
    "npu": Backend("npu", "npu", npu.probe),
}
CHOICES = ("auto", *BACKENDS)
_ENV = "SKIPARSE_BACKEND"
# The use_backend choice in force: a ContextVar, so other threads and tasks never see it (each has its own value).
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("skiparse_backend", default=None)


@functools.cache
def status(name: str) -> tuple[bool, str]:
    """``(available, reason)`` of a backend, probed once."""
    return BACKENDS[name].probe()


def _check_choice(name: str, source: str) -> str:
    if name not in CHOICES:
        raise ValueError(f"{source}: unknown skiparse backend {name!r}; expected one of {', '.join(CHOICES)}")
    return name


def requested() -> str:
    """The backend asked for: the innermost :func:`use_backend`, else ``$SKIPARSE_BACKEND``, else ``auto``."""
    name = _override.get()
    if name is not None:
        return name
    return _check_choice(os.environ.get(_ENV, "auto").strip().lower() or "auto", _ENV)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the skiparse ops inside the block on backend ``name`` (``auto``, ``reference``, ``cpu``, ...).

    The choice holds for the current thread (or asyncio task) only; blocks nest, and leaving one restores the
    choice that was in force when it was entered. ``torch.compile`` reads it once, at trace time: enter the block
    around the compiled call (inside a ``fullgraph=True`` region Dynamo cannot trace ``ContextVar.set``)."""
    token = _override.set(_check_choice(name, "use_backend(name)"))
    try:
        yield
    finally:
        _override.reset(token)


@functools.cache
def _warn_fallback(device_type: str, why: str) -> None:
    warnings.warn(
        f"skiparse: no compiled backend for {device_type} tensors ({why}); using the PyTorch reference",
        RuntimeWarning,
        stacklevel=4,
    )


@torch.compiler.assume_constant_result
def resolve(device: torch.device) -> str:
    """The backend that runs tensors on ``device``; under ``torch.compile`` it is chosen once, at trace time."""
    name = requested()
    if name == "auto":
        for candidate in BACKENDS.values():
            if candidate.device_type == device.type and status(candidate.name)[0]:
                return candidate.name
        native = [b for b in BACKENDS.values() if b.device_type == device.type]
        _warn_fallback(device.type, status(native[0].name)[1] if native else "no kernels for this device type")
        return "reference"
    backend = BACKENDS[name]
    ok, why = status(name)
    if not ok:
        raise RuntimeError(f"skiparse backend {name!r} is not available: {why}")
    if backend.device_type not in (None, device.type):
        raise ValueError(f"skiparse backend {name!r} runs {backend.device_type} tensors, got tensors on {device}")
    return name

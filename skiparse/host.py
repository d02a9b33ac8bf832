"""Host-side helpers shared by the benchmarks and by ``suv``: atomic file writes and this process's resident memory.

They touch no tensor; they live here so that a benchmark of the op library needs no model package, and ``suv.io``
reuses them (dependencies point one way: ``suv`` -> ``skiparse``).
"""
from __future__ import annotations

import contextlib
import glob
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _tmp_prefix(path: Path) -> str:
    """Temporaries of ``path`` are ``.<name>.<host>.<pid>.<random>.tmp``: who wrote one is known after a crash."""
    return f".{path.name}.{socket.gethostname()}."


def remove_stale_temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Remove the temporaries of ``folder/name`` (``name`` may be a glob) left by writers of this host whose
    process is gone (killed mid-write); returns what was removed. Live writers' files are kept."""
    removed = []
    for tmp in Path(folder).glob(f".{name}.{socket.gethostname()}.*.tmp"):
        pid = tmp.name[: -len(".tmp")].rsplit(".", 2)[-2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed.

    Readers never see a half-written file, and an interrupted write leaves any previous file intact. The file gets
    the mode a plain ``open`` would give (0666 less the umask), and temporaries of ``path`` left by a killed writer
    are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, glob.escape(path.name))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_tmp_prefix(path)}{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600, and so do writers that replace the file they are given (safetensors)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def _status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def rss_mib() -> float | None:
    """This process's resident set size now, in MiB (None off Linux)."""
    return _status_mib("VmRSS")


def reset_peak_rss() -> bool:
    """Restart the peak RSS (VmHWM) from the current RSS (Linux ``clear_refs`` mode 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB: host memory only, never a GPU's.

    Since the last ``reset_peak_rss`` on Linux (VmHWM), else since the process started (``getrusage``).
    """
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    import resource  # POSIX only; Linux answered above

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return kib / 1024


def fixed_mmap_threshold(threshold: int = 1 << 20) -> bool:
    """Make glibc serve every allocation of ``threshold`` bytes or more with its own mapping, returned to the OS on
    free; False where that is not possible (no glibc).

    By default glibc raises this threshold after the first large frees (up to 32 MiB), so later tensors come from
    the heap and stay resident once freed: peak RSS then depends on fragmentation, not on what was alive. Fixed,
    peak RSS measures the live allocations. Call it first in a process that measures memory.
    """
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, threshold))  # M_MMAP_THRESHOLD; setting it stops the raise
    except (OSError, AttributeError):
        return False


def peak_extra_mib(fn: Callable[[], T]) -> tuple[T, float | None]:
    """Runs ``fn`` once; returns (its result, peak RSS above the starting RSS in MiB, or None off Linux)."""
    before = rss_mib() if reset_peak_rss() else None
    result = fn()
    return result, (None if before is None else peak_rss_mib() - before)

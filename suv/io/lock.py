"""An exclusive lock on an output folder (a training run, a latent cache): a second writer fails at once.

The lock is ``fcntl.flock`` on ``<folder>/.lock``, held for as long as the process runs: the kernel releases it
when the process exits, however it exits (kill -9 included), so a crashed run never leaves the folder locked. The
file holds the holder's pid and host, for the error the second writer gets. Local filesystems only: flock on NFS
may not exclude processes of other hosts.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"


class FolderLocked(RuntimeError):
    """Another process holds the output folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Raises ``FolderLocked`` naming the holder (pid, host) if another process holds it, and ``OSError`` if the
    folder cannot be created or written.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise OSError(f"cannot write in {what} {folder}: {e.strerror or e}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown process"
            raise FolderLocked(f"{what} {folder} is in use by {holder} (lock {path}); wait for it to finish or "
                               "choose another folder") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock

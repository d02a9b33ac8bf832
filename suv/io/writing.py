"""Writing a file atomically, with its failures reported as one ``OSError`` that names the file."""
from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError

from skiparse.host import atomic_path


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """``atomic_path`` whose failures are one ``OSError`` naming ``path``: disk full (torch's zip writer says
    ``enforce fail at inline_container.cc``), a read-only folder, an output that is a directory."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory; expected a file path")
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except (OSError, RuntimeError, SafetensorError) as e:
        text = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1]
        reason = re.sub(r"\[enforce fail at [^\]]*\][ .]*", "", text) or type(e).__name__
        # torch's zip writer only says that a write came up short; the usual cause is a full disk
        if text != reason or getattr(e, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            reason += " (is the disk full?)"
        raise OSError(f"cannot write {path}: {reason}") from e

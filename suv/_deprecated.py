"""Old import paths that still work: each name resolves to where it lives now, with a DeprecationWarning."""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable


def moved(old_module: str, new_homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old_module`` that finds each name of ``new_homes`` (name -> module) there,
    importing it only when asked (so the old module imports nothing and creates no cycle)."""

    def __getattr__(name: str) -> Any:
        home = new_homes.get(name)
        if home is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(f"{old_module}.{name} is deprecated; import it from {home}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)

    return __getattr__

"""The models' configs, one style: frozen dataclasses with the reference config's field names, built from a preset
name or a plain dict (the reference JSON or ``to_dict`` output; JSON files: ``checkpoint.read_json_config``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

C = TypeVar("C")


def resolve(config: Any, cls: type[C], presets: Mapping[str, C], what: str) -> C:
    """A ``cls`` instance from an instance, a preset name of ``presets``, or a dict (``cls.from_dict``)."""
    if isinstance(config, cls):
        return config
    if isinstance(config, str):
        if config not in presets:
            raise ValueError(f"unknown {what} preset {config!r}; expected one of {sorted(presets)}")
        return presets[config]
    return cls.from_dict(config)


def check_positive_ints(config: Any, names: tuple[str, ...]) -> None:
    """ValueError naming the first field of ``names`` that is not an int >= 1 (bools are not ints here)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive int, got {value!r}")


def plain_dict(config: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a config dataclass as plain JSON (tuples become lists), without ``exclude``."""
    return {f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
            for f in dataclasses.fields(config) if f.name not in exclude}  # fmt: skip

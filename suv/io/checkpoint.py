"""Checkpoint files: atomic writes, container unwrapping, strict loading with clear reports, nested training state.

Files ending in ``.safetensors`` are safetensors (a config as JSON in the metadata); anything else is a torch pickle,
read with ``weights_only=True`` unless the caller vouches for the file. ``save_state`` stores any nested
dict/list of tensors and plain values (a trainer's state: weights, optimizer, EMA, counters) as one safetensors file
whose metadata holds the structure; ``read_checkpoint`` gives it back as it was.

Every file written here carries the SHA-256 of its tensors (names, dtypes, shapes, bytes: ``tensor_digest``), in the
safetensors metadata or beside the state dict of a torch file; ``read_checkpoint`` recomputes it and refuses a file
whose tensor data changed since it was written. Files from elsewhere (released checkpoints) have none and load as
they are. A failed write (disk full, read-only folder, a directory in the way) is one ``OSError`` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .writing import writing

PathLike = str | os.PathLike

# Containers seen in released checkpoints, in order of preference: WF-VAE training saves
# {"ema_state_dict": ..., "state_dict": {"gen_model": ..., "dics_model": ...}, "optimizer_state": ...}.
DEFAULT_CONTAINER_KEYS = ("ema_state_dict", "state_dict", "gen_model", "model", "module")
_CONFIG_KEY = "config"
_STATE_KEY = "state"  # safetensors metadata of ``save_state``: the nested structure, tensors named by number
_DIGEST_KEY = "sha256"  # ``tensor_digest`` of the file's tensors


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit the model it is loaded into."""


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _verify(path: Path, tensors: Mapping[str, torch.Tensor], digest: str) -> None:
    if tensor_digest(tensors) != digest:
        raise CheckpointError(f"corrupt checkpoint {path}: its tensor data does not match the SHA-256 stored when it "
                              "was written (a changed or damaged file); restore it from a good copy")  # fmt: skip


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: PathLike, config: Mapping[str, Any] | None = None
                    ) -> None:  # fmt: skip
    """Write ``state_dict`` (and a JSON-able ``config``) atomically, as safetensors or a torch pickle by suffix.

    Torch files hold ``{"state_dict": ..., "config": ...}``; safetensors keep the config in the metadata.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    digest = tensor_digest(tensors)
    with writing(path) as tmp:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import save_file

            metadata = {_DIGEST_KEY: digest}
            if config is not None:
                metadata[_CONFIG_KEY] = json.dumps(dict(config))
            save_file(tensors, str(tmp), metadata=metadata)
        else:
            payload: dict[str, Any] = {"state_dict": tensors, _DIGEST_KEY: digest}
            if config is not None:
                payload[_CONFIG_KEY] = dict(config)
            torch.save(payload, tmp)


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> dict:
    """JSON form of a nested value; its tensors go to ``tensors`` under their number (keys keep their type)."""
    if isinstance(obj, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = obj.detach().cpu().contiguous()
        return {"tensor": name}
    if isinstance(obj, Mapping):
        return {"dict": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__: [_pack(v, tensors) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(f"save_state: cannot store a {type(obj).__name__}; expected tensors, dicts, lists, tuples, "
                    "numbers, strings or None")  # fmt: skip


def _unpack(node: dict, tensors: Mapping[str, torch.Tensor]) -> Any:
    (kind, value), = node.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {k: _unpack(v, tensors) for k, v in value}
    if kind in ("list", "tuple"):
        items = [_unpack(v, tensors) for v in value]
        return items if kind == "list" else tuple(items)
    return value


def save_state(state: Mapping[str, Any], path: PathLike) -> None:
    """Write a nested state (tensors, dicts, lists, tuples, plain values) atomically as one ``.safetensors`` file."""
    if Path(path).suffix != ".safetensors":
        raise ValueError(f"save_state writes safetensors: path must end in .safetensors, got {path}")
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_pack(state, tensors))
    with writing(path) as tmp:
        save_file(tensors, str(tmp), metadata={_STATE_KEY: structure, _DIGEST_KEY: tensor_digest(tensors)})


def read_checkpoint(path: PathLike, weights_only: bool = True) -> Any:
    """Load a checkpoint file's object onto the CPU.

    A safetensors file yields ``{"state_dict": tensors, "config": ...}``, or the nested object ``save_state`` wrote.
    Raises ``FileNotFoundError`` if missing and ``CheckpointError`` if the file is corrupt (including tensor data
    that fails the SHA-256 this package stored in it) or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
                metadata = f.metadata() or {}
        else:
            obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch and safetensors raise many types for truncated or foreign files
        hint = ""
        if weights_only and "weights_only" in str(e):
            hint = " (it holds non-tensor objects; pass weights_only=False only if you trust the file)"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}{hint}") from e
    if path.suffix != ".safetensors":
        stored = obj.get(_DIGEST_KEY) if isinstance(obj, dict) else None
        if isinstance(stored, str) and isinstance(obj.get("state_dict"), Mapping):
            _verify(path, obj["state_dict"], obj.pop(_DIGEST_KEY))
        return obj
    if _DIGEST_KEY in metadata:
        _verify(path, tensors, metadata[_DIGEST_KEY])
    if _STATE_KEY in metadata:
        return _unpack(json.loads(metadata[_STATE_KEY]), tensors)
    obj = {"state_dict": tensors}
    if _CONFIG_KEY in metadata:
        obj[_CONFIG_KEY] = json.loads(metadata[_CONFIG_KEY])
    return obj


def read_json_config(path: PathLike, block: str) -> Mapping[str, Any]:
    """A model config from a JSON file; a full Open-Sora Plan model JSON nests it under ``block`` (``"ae"``,
    ``"predictor"``), which is then returned."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read config {path}: {e}") from e
    return data[block] if isinstance(data, Mapping) and isinstance(data.get(block), Mapping) else data


def is_json_path(config: Any) -> bool:
    """Whether a loader's ``config`` argument names a JSON file (rather than a preset or a dict)."""
    return isinstance(config, (str, os.PathLike)) and Path(config).suffix == ".json"


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, container_keys: tuple[str, ...] = DEFAULT_CONTAINER_KEYS,
                      strip_prefixes: tuple[str, ...] = ("module.",)) -> dict[str, torch.Tensor]:  # fmt: skip
    """Find the parameter dict inside a checkpoint container and strip wrapper prefixes from its keys.

    Descends through the first non-empty entry of ``container_keys`` at each level (so an EMA copy wins over the
    raw weights by default) until it reaches a flat {name: tensor} dict; then removes ``strip_prefixes`` (DDP's
    ``module.``) from the start of every key.
    """
    path = []
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"no state dict found at {'/'.join(path) or 'top level'}: got {type(obj).__name__}")
        key = next((k for k in container_keys if isinstance(obj.get(k), Mapping) and len(obj[k]) > 0), None)
        if key is None:
            raise CheckpointError(
                f"no state dict found at {'/'.join(path) or 'top level'}: keys {sorted(map(str, obj))[:10]}, "
                f"expected a flat name->tensor dict or one of the containers {list(container_keys)}"
            )
        obj, path = obj[key], [*path, key]
    out = {}
    for name, tensor in obj.items():
        for prefix in strip_prefixes:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = tensor
    return out


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"{len(names)} [{shown}{', ...' if len(names) > limit else ''}]"


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "model",
                           assign: bool = False) -> None:  # fmt: skip
    """Load every parameter and buffer of ``module`` from ``state_dict``, or raise one ``CheckpointError`` that
    lists the missing keys, the unexpected keys and the shape mismatches (the usual sign of a wrong config).

    ``assign=True`` makes the module's parameters the checkpoint's tensors (no copy: for a meta-device module).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"checkpoint does not match the {what}"]
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {_listing(mismatched, 4)}")
        parts.append("check that the config matches the checkpoint")
        raise CheckpointError("; ".join(parts))
    module.load_state_dict(state_dict, strict=True, assign=assign)


def _tensors_only(obj: Any) -> Any:
    """Megatron stores ``<module>._extra_state: None``; drop those so the flat dict is name -> tensor only."""
    if isinstance(obj, Mapping):
        return {k: _tensors_only(v) for k, v in obj.items() if not str(k).endswith("._extra_state")}
    return obj


def read_model_checkpoint(path: PathLike, config: Any = None, json_block: str = "", default: Any = None,
                          container_keys: tuple[str, ...] = DEFAULT_CONTAINER_KEYS, weights_only: bool = True
                          ) -> tuple[dict[str, torch.Tensor], Any]:  # fmt: skip
    """``(flat state dict, config)`` of a model checkpoint file, for a loader to build the model and load it.

    The state dict is unwrapped from its containers (``unwrap_state_dict``), without Megatron's ``_extra_state``
    entries. The config is ``config`` as given (a JSON file is read, its ``json_block`` found), else the one stored
    in the file, else ``default``.
    """
    obj = _tensors_only(read_checkpoint(path, weights_only=weights_only))
    if is_json_path(config):
        config = read_json_config(config, json_block)
    if config is None:
        stored = obj.get(_CONFIG_KEY) if isinstance(obj, Mapping) else None
        config = stored if isinstance(stored, Mapping) else default
    return unwrap_state_dict(obj, container_keys), config


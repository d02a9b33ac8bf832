"""Checkpoint I/O for the SUV models: atomic writes, container unwrapping, strict loading with clear reports.

Generic helpers (``atomic_path``, ``save_checkpoint``, ``read_checkpoint``, ``unwrap_state_dict``,
``load_state_dict_strict``) plus the model loaders built on them (``load_wfvae``, ``save_wfvae``).

Files ending in ``.safetensors`` are safetensors (config JSON in the metadata); anything else is a torch pickle,
read with ``weights_only=True`` unless the caller vouches for the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch
from torch import nn

if TYPE_CHECKING:
    from suv.vae import WFVAE, WFVAEConfig

PathLike = str | os.PathLike

# Containers seen in released checkpoints, in order of preference: WF-VAE training saves
# {"ema_state_dict": ..., "state_dict": {"gen_model": ..., "dics_model": ...}, "optimizer_state": ...}.
DEFAULT_CONTAINER_KEYS = ("ema_state_dict", "state_dict", "gen_model", "model", "module")
_CONFIG_KEY = "config"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit the model it is loaded into."""


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed.

    Readers never see a half-written file, and an interrupted write leaves any previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: PathLike, config: Mapping[str, Any] | None = None
                    ) -> None:  # fmt: skip
    """Write ``state_dict`` (and a JSON-able ``config``) atomically, as safetensors or a torch pickle by suffix.

    Torch files hold ``{"state_dict": ..., "config": ...}``; safetensors keep the config in the metadata.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import save_file

            metadata = {_CONFIG_KEY: json.dumps(dict(config))} if config is not None else None
            save_file(tensors, str(tmp), metadata=metadata)
        else:
            payload: dict[str, Any] = {"state_dict": tensors}
            if config is not None:
                payload[_CONFIG_KEY] = dict(config)
            torch.save(payload, tmp)


def read_checkpoint(path: PathLike, weights_only: bool = True) -> Any:
    """Load a checkpoint file's object onto the CPU (a safetensors file yields its tensors and metadata config).

    Raises ``FileNotFoundError`` if missing and ``CheckpointError`` if the file is corrupt or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                obj: dict[str, Any] = {"state_dict": {k: f.get_tensor(k) for k in f.keys()}}
                metadata = f.metadata() or {}
            if _CONFIG_KEY in metadata:
                obj[_CONFIG_KEY] = json.loads(metadata[_CONFIG_KEY])
            return obj
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch and safetensors raise many types for truncated or foreign files
        hint = ""
        if weights_only and "weights_only" in str(e):
            hint = " (it holds non-tensor objects; pass weights_only=False only if you trust the file)"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}{hint}") from e


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


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """Load every parameter and buffer of ``module`` from ``state_dict``, or raise one ``CheckpointError`` that
    lists the missing keys, the unexpected keys and the shape mismatches (the usual sign of a wrong config)."""
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
    module.load_state_dict(state_dict, strict=True)


def _read_config_file(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read config {path}: {e}") from e
    # A full Open-Sora Plan model JSON nests the VAE config under "ae".
    return data["ae"] if isinstance(data, Mapping) and "ae" in data else data


def load_wfvae(path: PathLike, config: WFVAEConfig | Mapping[str, Any] | str | None = None,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, use_ema: bool = True,
               weights_only: bool = True) -> WFVAE:  # fmt: skip
    """Load a WF-VAE checkpoint strictly into an eval-mode ``WFVAE``.

    path: a released ``.ckpt`` (``ema_state_dict`` / ``state_dict`` / ``gen_model`` containers, ``module.``
    prefixes) or a file written by ``save_wfvae``.
    config: a ``WFVAEConfig``, a reference config dict, a preset name, or a JSON file (a model JSON's ``ae``
    block is found). None uses the config stored in the checkpoint, else the v1.5 preset.
    use_ema: prefer ``ema_state_dict`` when the checkpoint has one (the reference does the same).
    """
    from suv.vae import WFVAE

    obj = read_checkpoint(path, weights_only=weights_only)
    if isinstance(config, (str, os.PathLike)) and Path(config).suffix == ".json":
        config = _read_config_file(Path(config))
    if config is None:
        config = obj.get(_CONFIG_KEY, "v1.5") if isinstance(obj, Mapping) else "v1.5"
    keys = DEFAULT_CONTAINER_KEYS if use_ema else tuple(k for k in DEFAULT_CONTAINER_KEYS if k != "ema_state_dict")
    state_dict = unwrap_state_dict(obj, keys)
    model = WFVAE.from_config(config)
    load_state_dict_strict(model, state_dict, what=f"WF-VAE config (latent_dim={model.config.latent_dim}, "
                           f"base_channels={model.config.base_channels})")  # fmt: skip
    return model.to(device=device, dtype=dtype).eval()


def save_wfvae(model: WFVAE, path: PathLike) -> None:
    """Write a WF-VAE's weights with its config (released key names), atomically; ``load_wfvae`` reads it back."""
    save_checkpoint(model.state_dict(), path, config=model.config.to_dict())


def __getattr__(name: str):
    # `suv.checkpoint.load_suv` is the SUV denoiser's loader; it lives in suv.suv_checkpoint, which imports the
    # helpers above, so it is resolved lazily here.
    if name in ("load_suv", "save_suv"):
        from suv import suv_checkpoint

        return getattr(suv_checkpoint, name)
    raise AttributeError(f"module 'suv.checkpoint' has no attribute {name!r}")

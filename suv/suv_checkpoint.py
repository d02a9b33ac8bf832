"""Load and convert SUV denoiser checkpoints (the released flat ``model_ema.pt`` or this package's files).

``load_suv(path)`` reads ``.pt``/``.pth``/``.ckpt`` (torch pickle) or ``.safetensors``, unwraps containers,
drops ``*._extra_state`` entries and the last block's unused text branch, and loads strictly with a report of
missing/unexpected keys and shape mismatches. ``suv-convert`` writes a safetensors copy atomically.
"""
from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from suv.checkpoint import (
    DEFAULT_CONTAINER_KEYS,
    CheckpointError,
    load_state_dict_strict,
    read_checkpoint,
    save_checkpoint,
    unwrap_state_dict,
)
from suv.models import SparseUMMDiT
from suv.models.config import resolve_config

PathLike = str | os.PathLike


def _tensors_only(obj: Any) -> Any:
    """Megatron stores ``<module>._extra_state: None``; drop those so the flat dict is name -> tensor only."""
    if isinstance(obj, Mapping):
        return {k: _tensors_only(v) for k, v in obj.items() if not str(k).endswith("._extra_state")}
    return obj


def read_suv_state_dict(path: PathLike, weights_only: bool = True) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(flat state dict without ``_extra_state`` entries, stored config or None) of a SUV checkpoint file."""
    obj = _tensors_only(read_checkpoint(path, weights_only=weights_only))
    config = obj.get("config") if isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping) else None
    return unwrap_state_dict(obj, DEFAULT_CONTAINER_KEYS), config


def load_suv(path: PathLike, config: Mapping[str, Any] | str | None = None, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None, weights_only: bool = True) -> SparseUMMDiT:  # fmt: skip
    """Build a ``SparseUMMDiT`` and load ``path`` into it strictly; returns it in eval mode.

    config: a ``PRESETS`` name, a reference config dict, or a JSON file (a model JSON's ``predictor`` block is
    found); None uses the config stored in the file, else ``"suv-8.5b"``.
    dtype: cast after loading (None keeps the checkpoint's dtype).
    Raises ``CheckpointError`` naming missing/unexpected keys and the offending shapes when the checkpoint was
    made for another config.
    """
    state_dict, stored = read_suv_state_dict(path, weights_only)
    if isinstance(config, (str, os.PathLike)) and Path(config).suffix == ".json":
        import json

        config = json.loads(Path(config).read_text())
    cfg = resolve_config(config if config is not None else (stored or "suv-8.5b"))
    with torch.device("meta"):
        model = SparseUMMDiT(**cfg)
    for key in model.unused_checkpoint_keys(state_dict):
        del state_dict[key]
    # Checked on the meta model (no memory), then the checkpoint's tensors are assigned, not copied: a 17 GB
    # file costs 17 GB, not twice that.
    heads = f"{cfg['num_heads']}x{cfg['head_dim']}"
    with warnings.catch_warnings():  # its final in-place copy into meta tensors is a (warned) no-op
        warnings.filterwarnings("ignore", message=".*meta parameter.*")
        load_state_dict_strict(model, state_dict, what=f"SUV config (num_layers={cfg['num_layers']}, heads={heads}, "
                               f"in_channels={cfg['in_channels']})")  # fmt: skip
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.to(device=device, dtype=dtype)
    return model.eval()


def save_suv(model: SparseUMMDiT, path: PathLike) -> None:
    """Write the model's weights and config atomically (``.safetensors`` or torch pickle by suffix)."""
    save_checkpoint(model.state_dict(), path, config=model.config)


def main(argv: list[str] | None = None) -> int:
    """``suv-convert SRC DST.safetensors [--config NAME|JSON] [--dtype bf16]``: verified safetensors copy."""
    parser = argparse.ArgumentParser(prog="suv-convert", description=main.__doc__)
    parser.add_argument("src", help="SUV checkpoint (.pt / .safetensors, e.g. the released model_ema.pt)")
    parser.add_argument("dst", help="output .safetensors path (written atomically)")
    parser.add_argument("--config", default=None, help="preset name or reference JSON (default: stored or suv-8.5b)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None, help="cast the weights")
    args = parser.parse_args(argv)
    if Path(args.dst).suffix != ".safetensors":
        parser.error(f"dst must end in .safetensors, got {args.dst}")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(args.dtype)
    try:
        model = load_suv(args.src, config=args.config, dtype=dtype)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        parser.exit(2, f"suv-convert: error: {e}\n")
    save_suv(model, args.dst)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.dst}: {len(model.state_dict())} tensors, {n:,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

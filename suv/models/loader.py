"""Load and save SUV denoiser checkpoints (the released flat ``model_ema.pt`` or this package's files).

``load_suv(path)`` reads ``.pt``/``.pth``/``.ckpt`` (torch pickle) or ``.safetensors``, unwraps containers,
drops ``*._extra_state`` entries and the last block's unused text branch, and loads strictly with a report of
missing/unexpected keys and shape mismatches.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import torch

from ..io.checkpoint import load_state_dict_strict, read_model_checkpoint, save_checkpoint
from .config import SUVConfig, resolve_config
from .sparse_ummdit import SparseUMMDiT

PathLike = str | os.PathLike


def read_suv_state_dict(path: PathLike, weights_only: bool = True) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(flat state dict without ``_extra_state`` entries, stored config or None) of a SUV checkpoint file."""
    return read_model_checkpoint(path, weights_only=weights_only)


def load_suv(path: PathLike, config: SUVConfig | Mapping[str, Any] | str | None = None,
             device: torch.device | str = "cpu", dtype: torch.dtype | None = None, weights_only: bool = True
             ) -> SparseUMMDiT:  # fmt: skip
    """Build a ``SparseUMMDiT`` and load ``path`` into it strictly; returns it in eval mode.

    config: a ``SUVConfig``, a ``PRESETS`` name, a reference config dict, or a JSON file (a model JSON's
    ``predictor`` block is found); None uses the config stored in the file, else ``"suv-8.5b"``.
    dtype: cast after loading (None keeps the checkpoint's dtype).
    Raises ``CheckpointError`` naming missing/unexpected keys and the offending shapes when the checkpoint was
    made for another config.
    """
    state_dict, config = read_model_checkpoint(path, config, "predictor", "suv-8.5b", weights_only=weights_only)
    cfg = resolve_config(config)
    with torch.device("meta"):
        model = SparseUMMDiT.from_config(cfg)
    for key in model.unused_checkpoint_keys(state_dict):
        del state_dict[key]
    # Checked on the meta model (no memory), then the checkpoint's tensors are assigned, not copied: a 17 GB
    # file costs 17 GB, not twice that.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*meta parameter.*")
        load_state_dict_strict(model, state_dict, assign=True, what=f"SUV config (num_layers={list(cfg.num_layers)}, "
                               f"heads={cfg.num_heads}x{cfg.head_dim}, in_channels={cfg.in_channels})")  # fmt: skip
    model.to(device=device, dtype=dtype)
    return model.eval()


def save_suv(model: SparseUMMDiT, path: PathLike) -> None:
    """Write the model's weights and config atomically (``.safetensors`` or torch pickle by suffix)."""
    save_checkpoint(model.state_dict(), path, config=model.config.to_dict())

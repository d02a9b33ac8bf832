"""Load and save WF-VAE checkpoints: released ``.ckpt`` containers or this package's files."""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from ..io.checkpoint import DEFAULT_CONTAINER_KEYS, load_state_dict_strict, read_model_checkpoint, save_checkpoint
from .config import WFVAEConfig
from .model import WFVAE

PathLike = str | os.PathLike


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
    keys = DEFAULT_CONTAINER_KEYS if use_ema else tuple(k for k in DEFAULT_CONTAINER_KEYS if k != "ema_state_dict")
    state_dict, config = read_model_checkpoint(path, config, "ae", "v1.5", keys, weights_only)
    model = WFVAE.from_config(config)
    load_state_dict_strict(model, state_dict, what=f"WF-VAE config (latent_dim={model.config.latent_dim}, "
                           f"base_channels={model.config.base_channels})")  # fmt: skip
    return model.to(device=device, dtype=dtype).eval()


def save_wfvae(model: WFVAE, path: PathLike) -> None:
    """Write a WF-VAE's weights with its config (released key names), atomically; ``load_wfvae`` reads it back."""
    save_checkpoint(model.state_dict(), path, config=model.config.to_dict())

"""Helpers of the SUV model-layer tests: tiny random models and inputs in the reference's shapes."""
from __future__ import annotations

from dataclasses import replace

import torch

from suv.models import PRESETS, SparseUMMDiT


def random_suv(preset: str = "suv-tiny", seed: int = 0, **overrides) -> SparseUMMDiT:
    """Eval-mode SUV with random weights; norm affines and skip linears are perturbed so they matter."""
    torch.manual_seed(seed)
    model = SparseUMMDiT.from_config(replace(PRESETS[preset], **overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and "linear" not in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def suv_inputs(model: SparseUMMDiT, batch: int = 2, frames: int = 2, height: int = 8, width: int = 12,
               text_len: int = 5, seed: int = 0, masked: bool = True) -> dict:  # fmt: skip
    """Keyword inputs of ``SparseUMMDiT.forward`` in the reference's shapes; the first item's text is padded."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    mask = torch.ones(batch, 1, text_len)
    if masked:
        mask[0, 0, text_len - 2 :] = 0
    return dict(
        hidden_states=torch.randn(batch, cfg.in_channels, frames, height, width, generator=g),
        timestep=torch.rand(batch, generator=g) * 1000,
        encoder_hidden_states=torch.randn(batch, 1, text_len, cfg.caption_channels, generator=g),
        encoder_attention_mask=mask,
        pooled_projections=torch.randn(batch, 1, cfg.pooled_projection_dim, generator=g),
    )

"""Classifier-free guidance with the "Common Diffusion Noise Schedules" rescale (diffusers ``rescale_noise_cfg``)."""
from __future__ import annotations

import torch


def guided_velocity(v_uncond: torch.Tensor, v_cond: torch.Tensor, scale: float, rescale: float = 0.0) -> torch.Tensor:
    """``v = v_u + scale*(v_c - v_u)``, then blend ``rescale`` of it renormalised to ``v_c``'s std.

    The std is taken per batch item over all other dims; inputs ``(B, ...)``, computed in fp32.
    """
    if not 0.0 <= rescale <= 1.0:
        raise ValueError(f"guidance rescale must be in [0, 1], got {rescale}")
    v_u, v_c = v_uncond.float(), v_cond.float()
    v = v_u + scale * (v_c - v_u)
    if rescale > 0.0:
        dims = tuple(range(1, v.dim()))
        rescaled = v * (v_c.std(dim=dims, keepdim=True) / v.std(dim=dims, keepdim=True))
        v = rescale * rescaled + (1.0 - rescale) * v
    return v

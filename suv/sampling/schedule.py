"""Flow-matching sigma shifts of Open-Sora Plan v1.5: the static one of inference, the resolution one of training."""
from __future__ import annotations

import math

import torch


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """``s*sigma / (1 + (s-1)*sigma)``: spends more of the schedule at high noise for ``s > 1``."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def resolution_shift(latent_height: int, latent_width: int) -> float:
    """Training's dynamic shift ``exp(mu)``, ``mu`` linear in the per-frame patch tokens ``H_lat * W_lat // 4``:
    0.5 at 256 tokens, 1.15 at 4096 (576x1024 -> 2304 tokens -> shift 2.33)."""
    tokens = latent_height * latent_width // 4
    slope = (1.15 - 0.5) / (4096 - 256)
    return math.exp(tokens * slope + 0.5 - 256 * slope)


def shifted_sigmas(steps: int = 50, shift: float = 7.0) -> torch.Tensor:
    """``(steps + 1,)`` float64 sigmas from 1 to 0: ``s*sigma / (1 + (s-1)*sigma)`` of ``linspace(1, 0, steps+1)``.

    The model's timestep at step i is ``1000 * sigmas[i]``; the last entry (0) is only the Euler target.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    sigma = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift_sigma(sigma, shift).clamp_min(0.0)

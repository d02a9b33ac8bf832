"""Flow-matching sigma schedule of Open-Sora Plan v1.5 inference (static shift)."""
from __future__ import annotations

import torch


def shifted_sigmas(steps: int = 50, shift: float = 7.0) -> torch.Tensor:
    """``(steps + 1,)`` float64 sigmas from 1 to 0: ``s*sigma / (1 + (s-1)*sigma)`` of ``linspace(1, 0, steps+1)``.

    The model's timestep at step i is ``1000 * sigmas[i]``; the last entry (0) is only the Euler target.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    sigma = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * sigma / (1.0 + (shift - 1.0) * sigma)).clamp_min(0.0)

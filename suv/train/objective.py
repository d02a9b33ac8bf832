"""The v1.5 rectified-flow training objective (spec: wfvae-and-training-reference.md 4.1, suv-reference.md 5.2).

``x_sigma = sigma * noise + (1 - sigma) * x0`` (fp32), the model predicts the velocity ``noise - x0`` at timestep
``1000 * sigma``, and the loss is the MSE over valid (unpadded) latent positions. ``sigma`` is
``sigmoid(N(0, 1))`` shifted by the resolution-dependent shift.
"""
from __future__ import annotations

import torch

from ..sampling.schedule import resolution_shift, shift_sigma


def sample_sigmas(batch: int, latent_hw: tuple[int, int], generator: torch.Generator | None = None,
                  logit_mean: float = 0.0, logit_std: float = 1.0, device=None) -> torch.Tensor:
    """``(batch,)`` fp32 training sigmas in (0, 1): logit-normal, then the dynamic shift of the latent size."""
    logits = torch.randn(batch, generator=generator, dtype=torch.float32) * logit_std + logit_mean
    return shift_sigma(torch.sigmoid(logits), resolution_shift(*latent_hw)).to(device)


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_sigma, target)`` in fp32 for latents ``(B, C, T, H, W)`` and per-sample ``sigma (B,)``."""
    s = sigma.float().view(-1, *([1] * (x0.dim() - 1)))
    x0, noise = x0.float(), noise.float()
    return s * noise + (1.0 - s) * x0, noise - x0


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the positions ``mask (B, T, H, W)`` keeps (all without a mask), every channel."""
    err = (pred.float() - target.float()).pow(2).mean(1)  # (B, T, H, W)
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)

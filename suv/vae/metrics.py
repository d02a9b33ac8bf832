"""Reconstruction metrics of the WF-VAE evaluation protocol (spec 3.2), on videos (B, C, T, H, W) in [0, 1].

- PSNR: per frame, 20 * log10(1 / sqrt(MSE over C, H, W)), averaged over frames and videos.
- SSIM: per channel and frame, 11x11 Gaussian window (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2, mean of the SSIM map
  over the valid region (no padding), averaged over channels, frames and videos; computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PSNR_IDENTICAL = 100.0  # reported for identical frames, whose PSNR is infinite
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"videos must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() != 5:
        raise ValueError(f"videos must be (B, C, T, H, W), got shape {tuple(a.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-frame PSNR in dB of two (B, C, T, H, W) videos in [0, 1]; identical frames count as 100 dB."""
    _check_pair(a, b)
    mse = (a.double() - b.double()).square().mean(dim=(1, 3, 4))  # (B, T)
    frame_psnr = torch.where(mse > 0, -10.0 * torch.log10(mse), torch.full_like(mse, PSNR_IDENTICAL))
    return frame_psnr.mean().item()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1D Gaussian (size,) in float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of two (B, C, T, H, W) videos in [0, 1] (frames at least 11x11)."""
    _check_pair(a, b)
    h, w = a.shape[-2:]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    g = gaussian_window().to(a.device)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable valid-mode Gaussian filter on (N, 1, H, W)
        x = F.conv2d(x, g.view(1, 1, -1, 1))
        return F.conv2d(x, g.view(1, 1, 1, -1))

    x = a.double().transpose(1, 2).reshape(-1, 1, h, w)  # every (video, frame, channel) plane
    y = b.double().transpose(1, 2).reshape(-1, 1, h, w)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    # Equal weights per plane: every map has the same size, so the global mean is the mean of per-plane means.
    return ssim_map.mean().item()


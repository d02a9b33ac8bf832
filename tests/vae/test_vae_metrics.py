"""PSNR and SSIM on analytic cases and against a naive sliding-window SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from suv.vae.metrics import psnr, ssim


def constant(value: float, t: int = 2, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.full((1, 3, t, h, w), value)


def test_psnr_of_constant_offset():
    assert psnr(constant(0.25), constant(0.5)) == pytest.approx(-20 * math.log10(0.25), abs=1e-9)


def test_psnr_averages_per_frame_values():
    a = torch.zeros(1, 3, 2, 8, 8)
    b = a.clone()
    b[:, :, 0] = 0.1  # frame 0: MSE 0.01 -> 20 dB
    b[:, :, 1] = 0.01  # frame 1: MSE 1e-4 -> 40 dB
    assert psnr(a, b) == pytest.approx(30.0, abs=1e-6)  # not the PSNR of the mean MSE (~23 dB)


def test_psnr_identical_frames_count_as_100_db():
    a = torch.rand(1, 3, 2, 8, 8)
    b = a.clone()
    b[:, :, 1] += 0.01
    assert psnr(a, a) == 100.0
    assert psnr(a, b) == pytest.approx((100.0 + 40.0) / 2, abs=1e-4)  # float32 inputs


def test_ssim_of_constant_images():
    # sigma terms vanish: SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly.
    a, b = (float(torch.tensor(v)) for v in (0.3, 0.6))  # the float32 values the videos hold
    expected = (2 * a * b + 0.01**2) / (a * a + b * b + 0.01**2)
    assert ssim(constant(a), constant(b)) == pytest.approx(expected, abs=1e-12)
    x = torch.rand(1, 3, 2, 16, 16)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)


def naive_ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    """Slide an 11x11 Gaussian (sigma 1.5) window over every valid position and average the SSIM values."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            vx, vy = (win * px * px).sum() - mx**2, (win * py * py).sum() - my**2
            cov = (win * px * py).sum() - mx * my
            values.append(((2 * mx * my + 1e-4) * (2 * cov + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4)))
    return float(np.mean(values))


def test_ssim_matches_naive_window_loop():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 2, 14, 13, generator=g)
    b = (a + 0.2 * torch.rand(a.shape, generator=g)).clamp(0, 1)
    planes = [naive_ssim_plane(a[n, c, t].double().numpy(), b[n, c, t].double().numpy())
              for n in range(2) for c in range(3) for t in range(2)]  # fmt: skip
    assert ssim(a, b) == pytest.approx(float(np.mean(planes)), abs=1e-10)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr(constant(0.1), constant(0.1, t=3))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        ssim(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(constant(0.1, h=8), constant(0.1, h=8))

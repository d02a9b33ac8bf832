"""Haar wavelets: kernels against the spec's definition, grouped convs against naive per-channel loops."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from suv.vae.wavelet import (
    HaarWaveletTransform2D,
    HaarWaveletTransform3D,
    InverseHaarWaveletTransform2D,
    InverseHaarWaveletTransform3D,
)

# Spec 1.2: which axes (t, h, w) each subband negates at index 1, in the released channel order.
SIGN_FLIPS_3D = {
    "h": (0, 0, 0), "g": (0, 0, 1), "hh": (0, 1, 0), "gh": (0, 1, 1),
    "h_v": (1, 0, 0), "g_v": (1, 0, 1), "hh_v": (1, 1, 0), "gh_v": (1, 1, 1),
}  # fmt: skip
SIGN_FLIPS_2D = {"aa": (0, 0), "ad": (1, 0), "da": (0, 1), "dd": (1, 1)}


def spec_kernel_3d(name: str) -> torch.Tensor:
    k = torch.empty(2, 2, 2)
    ft, fh, fw = SIGN_FLIPS_3D[name]
    for t, h, w in itertools.product(range(2), repeat=3):
        k[t, h, w] = 0.3536 * (-1) ** (ft * t + fh * h + fw * w)
    return k


def spec_kernel_2d(name: str) -> torch.Tensor:
    k = torch.empty(2, 2)
    fh, fw = SIGN_FLIPS_2D[name]
    for h, w in itertools.product(range(2), repeat=2):
        k[h, w] = 0.5 * (-1) ** (fh * h + fw * w)
    return k


def naive_haar3d(x: torch.Tensor) -> torch.Tensor:
    """Reference loop: per channel, replicate frame 0 once, one single-channel conv per subband."""
    b, c = x.shape[:2]
    out = []
    for name in SIGN_FLIPS_3D:
        bands = []
        for ch in range(c):
            xc = x[:, ch : ch + 1]
            xc = torch.cat([xc[:, :, :1], xc], dim=2)
            bands.append(F.conv3d(xc, spec_kernel_3d(name).view(1, 1, 2, 2, 2), stride=2))
        out.extend(bands)
    return torch.cat(out, dim=1)  # subband-major: channel = band * C + c


def naive_inverse_haar3d(coeffs: torch.Tensor) -> torch.Tensor:
    c = coeffs.shape[1] // 8
    out = 0
    for k, name in enumerate(SIGN_FLIPS_3D):
        band = coeffs[:, k * c : (k + 1) * c]
        per_channel = [
            F.conv_transpose3d(band[:, ch : ch + 1], spec_kernel_3d(name).view(1, 1, 2, 2, 2), stride=2)
            for ch in range(c)
        ]
        out = out + torch.cat(per_channel, dim=1)
    return out[:, :, 1:]


def naive_haar2d(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    out = []
    for name in SIGN_FLIPS_2D:
        for ch in range(c):
            out.append(F.conv2d(frames[:, ch : ch + 1], spec_kernel_2d(name).view(1, 1, 2, 2), stride=2))
    y = torch.cat(out, dim=1)
    return y.reshape(b, t, 4 * c, h // 2, w // 2).transpose(1, 2)


def test_kernels_match_spec_definition():
    wt, iwt = HaarWaveletTransform3D(), InverseHaarWaveletTransform3D()
    for name in SIGN_FLIPS_3D:
        torch.testing.assert_close(getattr(wt, f"{name}_conv").conv.weight[0, 0], spec_kernel_3d(name), rtol=0, atol=0)
        torch.testing.assert_close(getattr(iwt, name)[0, 0], spec_kernel_3d(name), rtol=0, atol=0)
        assert not getattr(wt, f"{name}_conv").conv.weight.requires_grad
    wt2 = HaarWaveletTransform2D()
    for name in SIGN_FLIPS_2D:
        torch.testing.assert_close(getattr(wt2, name)[0, 0], spec_kernel_2d(name), rtol=0, atol=0)


@pytest.mark.parametrize("t", [1, 3, 9])
@pytest.mark.parametrize("channels", [1, 3])
def test_haar3d_grouped_conv_matches_per_channel_loop(t, channels):
    x = torch.randn(2, channels, t, 6, 10)
    out = HaarWaveletTransform3D()(x)
    assert out.shape == (2, 8 * channels, (t - 1) // 2 + 1, 3, 5)
    torch.testing.assert_close(out, naive_haar3d(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [1, 4])
def test_inverse_haar3d_matches_per_band_loop(t):
    coeffs = torch.randn(2, 24, t, 5, 7)
    out = InverseHaarWaveletTransform3D()(coeffs)
    assert out.shape == (2, 3, 2 * t - 1, 10, 14)
    torch.testing.assert_close(out, naive_inverse_haar3d(coeffs), rtol=1e-6, atol=1e-6)


def test_haar2d_matches_per_channel_loop_and_inverts():
    x = torch.randn(2, 3, 4, 6, 8)
    coeffs = HaarWaveletTransform2D()(x)
    torch.testing.assert_close(coeffs, naive_haar2d(x), rtol=1e-6, atol=1e-6)
    # The +-1/2 kernels are orthonormal: the inverse is exact.
    torch.testing.assert_close(InverseHaarWaveletTransform2D()(coeffs), x, rtol=1e-6, atol=1e-6)


def test_haar3d_round_trip_scales_by_kernel_energy():
    # 0.3536 is a truncated 1/(2 sqrt 2): analysis then synthesis multiplies by 8 * 0.3536^2 (not exactly 1).
    x = torch.randn(1, 3, 9, 8, 8)
    recon = InverseHaarWaveletTransform3D()(HaarWaveletTransform3D()(x))
    torch.testing.assert_close(recon, x * (8 * 0.3536**2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transform", [HaarWaveletTransform3D, HaarWaveletTransform2D])
def test_forward_transforms_keep_channels_last(transform):
    """The encoder's layers follow their input's layout, so the first transform must hand on channels-last."""
    x = torch.randn(2, 3, 5, 6, 8)
    out = transform()(x.contiguous(memory_format=torch.channels_last_3d))
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, transform()(x), rtol=0, atol=0)

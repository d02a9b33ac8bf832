"""Haar wavelet transforms of the WF-VAE as grouped (de)convolutions with fixed +-1 kernels (spec 1.2).

Layout is subband-major: output channel ``band * C + c`` holds subband ``band`` of input channel ``c``, so
``coeffs[:, :C]`` is the low-pass band. The reference loops over channels with one single-channel conv per subband;
a grouped conv with every group holding all subband kernels computes the same sums in one call.

3D subbands, in order: ``h, g, hh, gh`` (low-pass in time) then the same four with ``_v`` (high-pass in time);
``g`` flips the sign along W, ``hh`` along H, ``gh`` along both, ``_v`` negates the second time slice. Each 2x2x2
kernel is +-0.3536 (the reference's truncated 1/(2*sqrt(2)), kept for bit-compatibility). The 2D transform (v1.3
level 1) has subbands ``aa, ad, da, dd`` (``ad`` flips along H, ``da`` along W) of +-1/2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .causal_cache import CausalCache, cat_frames, causal_context, memory_format
from .layers import CausalConv3d

HAAR_3D_SUBBANDS = ("h", "g", "hh", "gh", "h_v", "g_v", "hh_v", "gh_v")
HAAR_2D_SUBBANDS = ("aa", "ad", "da", "dd")
HAAR_3D_GAIN = 0.3536
HAAR_2D_GAIN = 0.5


def haar_kernel(name: str) -> torch.Tensor:
    """The fixed kernel of one subband: (2, 2, 2) for 3D names, (2, 2) for 2D names (index order t, h, w)."""
    if name in HAAR_3D_SUBBANDS:
        base = name.removesuffix("_v")
        flips, gain = (name.endswith("_v"), base in ("hh", "gh"), base in ("g", "gh")), HAAR_3D_GAIN
    elif name in HAAR_2D_SUBBANDS:
        flips, gain = (name in ("ad", "dd"), name in ("da", "dd")), HAAR_2D_GAIN
    else:
        raise ValueError(f"unknown Haar subband {name!r}")
    kernel = torch.full((2,) * len(flips), gain)
    for axis, flip in enumerate(flips):
        if flip:
            kernel.select(axis, 1).neg_()
    return kernel


def _to_band_major(x: torch.Tensor, bands: int) -> torch.Tensor:
    """(B, C * bands, ...) channel-major (groups of a grouped conv) -> (B, bands * C, ...) subband-major, in x's
    layout (a reshape would copy channels-last activations to the standard layout, and the layers after it follow)."""
    c = x.shape[1] // bands
    out = torch.empty_like(x, memory_format=memory_format(x))
    out.unflatten(1, (bands, c)).copy_(x.unflatten(1, (c, bands)).transpose(1, 2))
    return out


def _to_channel_major(x: torch.Tensor, bands: int) -> torch.Tensor:
    c = x.shape[1] // bands
    return x.unflatten(1, (bands, c)).transpose(1, 2).flatten(1, 2)


class HaarWaveletTransform3D(nn.Module):
    """(B, C, T, H, W) -> (B, 8C, (T - 1) // 2 + 1, H/2, W/2), causal in time (first frame replicated once).

    The kernels are frozen parameters ``{h,g,...}_conv.conv.weight`` (1, 1, 2, 2, 2), as in the checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        for name in HAAR_3D_SUBBANDS:
            conv = CausalConv3d(1, 1, 2, stride=2, bias=False)
            with torch.no_grad():
                conv.conv.weight.copy_(haar_kernel(name).view(1, 1, 2, 2, 2))
            conv.requires_grad_(False)
            self.add_module(f"{name}_conv", conv)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = x.shape[1]
        kernels = torch.cat([getattr(self, f"{n}_conv").conv.weight for n in HAAR_3D_SUBBANDS]).to(x.dtype)
        x = cat_frames(causal_context(x, 2, 2, self, cache), x)
        out = F.conv3d(x, kernels.repeat(c, 1, 1, 1, 1), stride=2, groups=c)
        return _to_band_major(out, len(HAAR_3D_SUBBANDS))


class _HaarKernelBuffers(nn.Module):
    """Holds the subband kernels as buffers named after the subbands (the released checkpoint's keys)."""

    subbands: tuple[str, ...]

    def __init__(self) -> None:
        super().__init__()
        for name in self.subbands:
            kernel = haar_kernel(name)
            self.register_buffer(name, kernel.view(1, 1, *kernel.shape))

    def grouped_kernels(self, channels: int, dtype: torch.dtype) -> torch.Tensor:
        """(len(subbands) * channels, 1, k_t, 2, 2) weight of a grouped (de)conv with ``groups=channels``."""
        kernels = torch.cat([getattr(self, n) for n in self.subbands]).to(dtype)
        if kernels.dim() == 4:  # 2D kernels act per frame: a 1-frame 3D kernel
            kernels = kernels.unsqueeze(2)
        return kernels.repeat(channels, 1, 1, 1, 1)


class InverseHaarWaveletTransform3D(_HaarKernelBuffers):
    """(B, 8C, T, H, W) -> (B, C, 2T - 1, 2H, 2W); drops the first output frame (the replicated one).

    Chunks after the first keep all 2T frames.
    """

    subbands = HAAR_3D_SUBBANDS

    def forward(self, coeffs: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = coeffs.shape[1] // len(self.subbands)
        x = _to_channel_major(coeffs, len(self.subbands))
        out = F.conv_transpose3d(x, self.grouped_kernels(c, coeffs.dtype), stride=2, groups=c)
        first_chunk = cache is None or cache.pop(self) is None
        if cache is not None:
            cache.put(self, True)
        return out[:, :, 1:] if first_chunk else out


class HaarWaveletTransform2D(_HaarKernelBuffers):
    """Per frame: (B, C, T, H, W) -> (B, 4C, T, H/2, W/2)."""

    subbands = HAAR_2D_SUBBANDS

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = x.shape[1]
        out = F.conv3d(x, self.grouped_kernels(c, x.dtype), stride=(1, 2, 2), groups=c)
        return _to_band_major(out, len(self.subbands))


class InverseHaarWaveletTransform2D(_HaarKernelBuffers):
    """Per frame: (B, 4C, T, H, W) -> (B, C, T, 2H, 2W)."""

    subbands = HAAR_2D_SUBBANDS

    def forward(self, coeffs: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = coeffs.shape[1] // len(self.subbands)
        x = _to_channel_major(coeffs, len(self.subbands))
        return F.conv_transpose3d(x, self.grouped_kernels(c, coeffs.dtype), stride=(1, 2, 2), groups=c)

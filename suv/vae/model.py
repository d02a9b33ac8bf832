"""WF-VAE (Open-Sora Plan v1.3/v1.5): encoder, decoder and the ``WFVAE`` model with chunked causal encode/decode.

Architecture and parameter names follow the released checkpoints (spec sections 1.3-1.5 and 2); see
``suv.vae.config`` for the configuration fields and presets.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .causal_cache import CausalCache, aligned_frames
from .config import WFVAEConfig, resolve_config
from .distribution import DiagonalGaussian
from .layers import (
    AttnBlock,
    CausalConv3d,
    Downsample,
    FrameConv2d,
    LayerNorm,
    ResnetBlock,
    Spatial2xTime2x3DDownsample,
    Spatial2xTime2x3DUpsample,
    Upsample,
)
from .tiling import tiled_apply
from .wavelet import (
    HaarWaveletTransform2D,
    HaarWaveletTransform3D,
    InverseHaarWaveletTransform2D,
    InverseHaarWaveletTransform3D,
)

VIDEO_CHANNELS = 3


class CausalSequential(nn.Sequential):
    """``nn.Sequential`` that passes the chunk cache to every layer."""

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, cache)
        return x


class Encoder(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, 2L, T_lat, H/8, W/8) Gaussian parameters, plus the wavelet targets.

    Three Haar levels feed the main path: W1 = WT(video) enters ``down1``; the low band of W1 gives W2
    (``connect_l1`` inflow, concatenated after ``down1``); the low band of W2 gives W3 (``connect_l2``, after
    ``down2``). W2 and W3 are returned for the wavelet (WL) loss.
    """

    def __init__(self, cfg: WFVAEConfig) -> None:
        super().__init__()
        base, flow, blocks = cfg.base_channels, cfg.encoder_energy_flow_hidden_size, cfg.encoder_num_resblocks
        l1_channels = VIDEO_CHANNELS * (8 if cfg.l1_is_3d else 4)
        self.down1 = CausalSequential(
            FrameConv2d(24, base, 3, padding=1),
            *[ResnetBlock(base, base, temporal=False) for _ in range(blocks)],
            Spatial2xTime2x3DDownsample(base, base) if cfg.l1_is_3d else Downsample(base, base),
        )
        self.down2 = CausalSequential(
            FrameConv2d(base + flow, 2 * base, 3, padding=1),
            *[ResnetBlock(2 * base, 2 * base, temporal=True) for _ in range(blocks)],
            Spatial2xTime2x3DDownsample(2 * base, 2 * base),
        )
        self.connect_l1 = FrameConv2d(l1_channels, flow, 3, padding=1)
        self.connect_l2 = FrameConv2d(24, flow, 3, padding=1)
        self.mid = CausalSequential(
            ResnetBlock(2 * base + flow, 4 * base, temporal=True),
            *([AttnBlock(4 * base)] if cfg.use_attention else []),
            ResnetBlock(4 * base, 4 * base, temporal=True),
        )
        self.norm_out = LayerNorm(4 * base)
        self.conv_out = CausalConv3d(4 * base, 2 * cfg.latent_dim, 3, padding=1)
        self.wavelet_transform_in = HaarWaveletTransform3D()
        self.wavelet_transform_l1 = HaarWaveletTransform3D() if cfg.l1_is_3d else HaarWaveletTransform2D()
        self.wavelet_transform_l2 = HaarWaveletTransform3D()

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        coeffs = self.wavelet_transform_in(x, cache)
        l1_coeffs = self.wavelet_transform_l1(coeffs[:, :VIDEO_CHANNELS], cache)
        l2_coeffs = self.wavelet_transform_l2(l1_coeffs[:, :VIDEO_CHANNELS], cache)
        h = torch.cat([self.down1(coeffs, cache), self.connect_l1(l1_coeffs)], dim=1)
        h = torch.cat([self.down2(h, cache), self.connect_l2(l2_coeffs)], dim=1)
        h = self.mid(h, cache)
        h = self.conv_out(F.silu(self.norm_out(h), inplace=True), cache)
        return h, (l1_coeffs, l2_coeffs)


class Decoder(nn.Module):
    """(B, L, T_lat, h, w) latent -> (B, 3, (T_lat - 1) * 4 or 8 + 1, 8h, 8w) video, plus predicted W2, W3.

    The last ``decoder_energy_flow_hidden_size`` channels after ``mid`` and after ``up2`` predict the wavelet
    coefficients of levels 3 and 2 (``connect_l2``/``connect_l1``); their inverse transforms are added to the
    low band of the next level's coefficients (energy flow), ending in the inverse transform of the output.
    """

    def __init__(self, cfg: WFVAEConfig) -> None:
        super().__init__()
        base, flow, blocks = cfg.base_channels, cfg.decoder_energy_flow_hidden_size, cfg.decoder_num_resblocks
        self.flow = flow
        l1_channels = VIDEO_CHANNELS * (8 if cfg.l1_is_3d else 4)
        self.conv_in = CausalConv3d(cfg.latent_dim, 4 * base, 3, padding=1)
        self.mid = CausalSequential(
            ResnetBlock(4 * base, 4 * base, temporal=True),
            *([AttnBlock(4 * base)] if cfg.use_attention else []),
            ResnetBlock(4 * base, 4 * base + flow, temporal=True),
        )
        self.up2 = CausalSequential(
            *[ResnetBlock(4 * base, 4 * base, temporal=True) for _ in range(blocks)],
            Spatial2xTime2x3DUpsample(4 * base, 4 * base, cfg.t_interpolation),
            ResnetBlock(4 * base, 4 * base + flow, temporal=True),
        )
        self.up1 = CausalSequential(
            *[ResnetBlock(4 * base if i == 0 else 2 * base, 2 * base, temporal=True) for i in range(blocks)],
            Spatial2xTime2x3DUpsample(2 * base, 2 * base, cfg.t_interpolation)
            if cfg.l1_is_3d
            else Upsample(2 * base, 2 * base),
            ResnetBlock(2 * base, 2 * base, temporal=True),
        )
        self.layer = CausalSequential(
            ResnetBlock(2 * base, base, temporal=True),
            ResnetBlock(base, base, temporal=True),
        )
        self.connect_l1 = CausalSequential(
            *[ResnetBlock(flow, flow, temporal=True) for _ in range(cfg.connect_res_layer_num)],
            FrameConv2d(flow, l1_channels, 3, padding=1),
        )
        self.connect_l2 = CausalSequential(
            *[ResnetBlock(flow, flow, temporal=True) for _ in range(cfg.connect_res_layer_num)],
            FrameConv2d(flow, 24, 3, padding=1),
        )
        self.norm_out = LayerNorm(base)
        self.conv_out = FrameConv2d(base, 24, 3, padding=1)
        self.inverse_wavelet_transform_out = InverseHaarWaveletTransform3D()
        self.inverse_wavelet_transform_l1 = (
            InverseHaarWaveletTransform3D() if cfg.l1_is_3d else InverseHaarWaveletTransform2D()
        )
        self.inverse_wavelet_transform_l2 = InverseHaarWaveletTransform3D()

    def forward(self, z: torch.Tensor, cache: CausalCache | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        h = self.mid(self.conv_in(z, cache), cache)
        l2_coeffs = self.connect_l2(h[:, -self.flow :], cache)
        l2 = self.inverse_wavelet_transform_l2(l2_coeffs, cache)
        h = self.up2(h[:, : -self.flow], cache)
        l1_coeffs = self.connect_l1(h[:, -self.flow :], cache)
        # The skip streams are causal while the upsampling path holds frames back in a chunked pass: add the
        # frames that line up and keep the rest for the next chunk.
        l1_coeffs[:, :VIDEO_CHANNELS] += aligned_frames(l2, l1_coeffs.shape[2], (self, "l2"), cache)
        l1 = self.inverse_wavelet_transform_l1(l1_coeffs, cache)
        h = self.layer(self.up1(h[:, : -self.flow], cache), cache)
        h = self.conv_out(F.silu(self.norm_out(h), inplace=True))
        h[:, :VIDEO_CHANNELS] += aligned_frames(l1, h.shape[2], (self, "l1"), cache)
        return self.inverse_wavelet_transform_out(h, cache), (l1_coeffs, l2_coeffs)


# Activations run channels-last: oneDNN's conv3d then works on them in place instead of converting every input to
# its blocked layout, which halves a full-resolution conv's working memory; the layers keep their input's layout.
ACTIVATION_LAYOUT = torch.channels_last_3d


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    """[0, 1) (the causal first frame alone), then consecutive ``size``-frame ranges up to ``total``."""
    return [(0, 1)] + [(s, min(s + size, total)) for s in range(1, total, size)]


def _run_in_chunks(net: nn.Module, x: torch.Tensor, chunk: int, frames_out: int) -> torch.Tensor:
    """``net(x)[0]`` computed over the time chunks ``_chunks(T, chunk)`` with one causal cache, each chunk's output
    written into a single ``frames_out``-frame tensor. The cache marks the last chunk (the decoder's temporal
    upsampling emits its held frame there)."""
    x = x.contiguous(memory_format=ACTIVATION_LAYOUT)
    cache, out, pos = CausalCache(), None, 0
    for start, end in _chunks(x.shape[2], chunk):
        cache.final = end == x.shape[2]
        y = net(x[:, :, start:end], cache)[0]
        if out is None:
            out = y.new_empty(*y.shape[:2], frames_out, *y.shape[3:])
        out[:, :, pos : pos + y.shape[2]] = y
        pos += y.shape[2]
    return out


class WFVAE(nn.Module):
    """Wavelet-flow video VAE. Constructor arguments are the reference config's fields (see ``WFVAEConfig``).

    ``encode``: (B, 3, T, H, W) in [-1, 1], (T - 1) % 8 == 0 (4 for 4x8x8), H and W divisible by 8 ->
    ``DiagonalGaussian`` over (B, latent_dim, (T - 1) / 8 + 1, H / 8, W / 8). ``decode`` inverts the shapes.
    A single image is T = 1.

    ``enable_tiling()`` switches both to temporal chunks with the causal cache: the result equals the direct pass
    (up to float rounding) for every valid T, and memory no longer grows with T. ``spatial_tile`` additionally
    splits large frames into blended tiles, which is approximate (see ``suv.vae.tiling``).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = WFVAEConfig(**config)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        # Latent statistics live in the config, not the checkpoint; buffers so that .to() moves them.
        self.register_buffer("scale", torch.tensor(self.config.scale).view(-1, 1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(self.config.shift).view(-1, 1, 1, 1), persistent=False)
        self.use_tiling = False
        self.t_chunk_enc = self.config.temporal_compression
        self.t_chunk_dec = 1  # smallest working set; per-chunk cost is the same work as the direct pass
        self.spatial_tile: int | None = None
        self.spatial_overlap = 64

    @classmethod
    def from_config(cls, config: WFVAEConfig | Mapping[str, Any] | str) -> WFVAE:
        """From a ``WFVAEConfig``, a reference config dict (e.g. the ``ae`` block of the model JSON) or a preset
        name (``"v1.5"``, ``"v1.3"``, ``"tiny"``)."""
        cfg = resolve_config(config)
        return cls(**cfg.to_dict(), extra=cfg.extra)

    def enable_tiling(self, use_tiling: bool = True, *, t_chunk_enc: int | None = None, t_chunk_dec: int | None = None,
                      spatial_tile: int | None = None, spatial_overlap: int | None = None) -> None:  # fmt: skip
        """Chunk encode/decode in time with the causal cache (exact), optionally also in space (approximate).

        t_chunk_enc: pixel frames per encoder chunk, a multiple of the temporal compression (default: 1 latent
        frame's worth). t_chunk_dec: latent frames per decoder chunk (default 1). Memory grows with both, speed
        barely.
        spatial_tile / spatial_overlap: tile size and overlap in pixels (multiples of 8); None disables tiling.
        """
        tc = self.config.temporal_compression
        t_chunk_enc = self.t_chunk_enc if t_chunk_enc is None else t_chunk_enc
        t_chunk_dec = self.t_chunk_dec if t_chunk_dec is None else t_chunk_dec
        spatial_overlap = self.spatial_overlap if spatial_overlap is None else spatial_overlap
        if not (isinstance(t_chunk_enc, int) and t_chunk_enc > 0 and t_chunk_enc % tc == 0):
            raise ValueError(f"t_chunk_enc must be a positive multiple of {tc} pixel frames, got {t_chunk_enc!r}")
        if not (isinstance(t_chunk_dec, int) and t_chunk_dec > 0):
            raise ValueError(f"t_chunk_dec must be a positive number of latent frames, got {t_chunk_dec!r}")
        if spatial_tile is not None:
            s = self.config.spatial_compression
            if not (isinstance(spatial_tile, int) and spatial_tile > 0 and spatial_tile % s == 0):
                raise ValueError(f"spatial_tile must be a positive multiple of {s} pixels, got {spatial_tile!r}")
            if not (isinstance(spatial_overlap, int) and 0 < spatial_overlap < spatial_tile
                    and spatial_overlap % s == 0):  # fmt: skip
                raise ValueError(f"spatial_overlap must be a multiple of {s} in (0, spatial_tile={spatial_tile}), "
                                 f"got {spatial_overlap!r}")  # fmt: skip
        self.use_tiling = use_tiling
        self.t_chunk_enc, self.t_chunk_dec = t_chunk_enc, t_chunk_dec
        self.spatial_tile, self.spatial_overlap = spatial_tile, spatial_overlap

    def disable_tiling(self) -> None:
        self.use_tiling = False
        self.spatial_tile = None

    # -- encode -------------------------------------------------------------------------------------------------

    def _check_video(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"x must be a floating-point video in [-1, 1], got dtype {x.dtype} (for uint8 pixels use x / 127.5 - 1)"
            )
        if x.dim() != 5 or x.shape[1] != VIDEO_CHANNELS:
            raise ValueError(f"x must be (B, 3, T, H, W) RGB video, got shape {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        tc, s = self.config.temporal_compression, self.config.spatial_compression
        if (t - 1) % tc != 0:
            lo, hi = (t - 1) // tc * tc + 1, ((t - 1) // tc + 1) * tc + 1
            raise ValueError(f"x must have T with (T - 1) % {tc} == 0 (e.g. {lo} or {hi}), got T={t}")
        if h % s or w % s:
            raise ValueError(f"x height and width must be divisible by {s}, got {h}x{w}")
        if x.shape[0] == 0 or h == 0 or w == 0:
            raise ValueError(f"x must hold at least one video of at least one pixel, got shape {tuple(x.shape)}")
        lo, hi = torch.aminmax(x.detach())
        if lo.isnan() or hi.isnan():
            raise ValueError("x contains NaN pixels; expected finite values in [-1, 1]")
        if lo < -1.001 or hi > 1.001:  # small slack for resampling overshoot
            raise ValueError(
                f"x must be in [-1, 1], got values in [{lo.item():.4g}, {hi.item():.4g}] "
                "(map [0, 1] pixels with 2x - 1)"
            )

    def _encode_frames(self, x: torch.Tensor, chunked: bool) -> torch.Tensor:
        if not chunked:
            return self.encoder(x.contiguous(memory_format=ACTIVATION_LAYOUT))[0].contiguous()
        t_lat = (x.shape[2] - 1) // self.config.temporal_compression + 1
        return _run_in_chunks(self.encoder, x, self.t_chunk_enc, t_lat)

    def encode(self, x: torch.Tensor, chunked: bool | None = None) -> DiagonalGaussian:
        """Video (B, 3, T, H, W) in [-1, 1] -> posterior over (B, L, (T - 1) / tc + 1, H / 8, W / 8).

        chunked: temporal chunks with the causal cache; None follows ``enable_tiling``.
        """
        self._check_video(x)
        chunked = self.use_tiling if chunked is None else chunked
        if chunked and self.spatial_tile is not None:
            params = tiled_apply(lambda t: self._encode_frames(t, True), x, self.spatial_tile, self.spatial_overlap,
                                 up=1, down=self.config.spatial_compression)  # fmt: skip
        else:
            params = self._encode_frames(x, chunked)
        return DiagonalGaussian(params)

    # -- decode -------------------------------------------------------------------------------------------------

    def _check_latent(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"z must be a floating-point latent, got dtype {z.dtype}")
        if z.dim() != 5 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"z must be (B, {self.config.latent_dim}, T_lat, h, w) latent, got shape {tuple(z.shape)}"
            )
        if z.numel() == 0:
            raise ValueError(f"z must hold at least one latent of at least one element, got shape {tuple(z.shape)}")

    def _decode_frames(self, z: torch.Tensor, chunked: bool) -> torch.Tensor:
        if not chunked:
            return self.decoder(z.contiguous(memory_format=ACTIVATION_LAYOUT))[0].contiguous()
        t_out = (z.shape[2] - 1) * self.config.temporal_compression + 1
        return _run_in_chunks(self.decoder, z, self.t_chunk_dec, t_out)

    def decode(self, z: torch.Tensor, chunked: bool | None = None) -> torch.Tensor:
        """Latent (B, L, T_lat, h, w) -> video (B, 3, (T_lat - 1) * tc + 1, 8h, 8w), nominally in [-1, 1].

        The decoder's output as is, like the reference (and diffusers' VAEs): not clamped, so gradients reach every
        pixel; the video writer (``suv.io.tensor_to_frames``) clamps.
        chunked: temporal chunks with the causal cache; None follows ``enable_tiling``.
        """
        self._check_latent(z)
        chunked = self.use_tiling if chunked is None else chunked
        if chunked and self.spatial_tile is not None:
            s = self.config.spatial_compression
            video = tiled_apply(lambda t: self._decode_frames(t, True), z, self.spatial_tile // s,
                                self.spatial_overlap // s, up=s, down=1)  # fmt: skip
        else:
            video = self._decode_frames(z, chunked)
        return video

    def forward(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, DiagonalGaussian]:  # fmt: skip
        """Reconstruct: (B, 3, T, H, W) -> (reconstruction of the same shape, posterior). Uses the posterior
        mean unless ``sample``."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(z), posterior

    # -- latent normalisation -----------------------------------------------------------------------------------

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latent -> denoiser latent: (z - shift_c) * scale_c per channel; z is (B, L, T, h, w)."""
        return (z - self.shift.to(z.dtype)) * self.scale.to(z.dtype)

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalize_latents``: z / scale_c + shift_c."""
        return z / self.scale.to(z.dtype) + self.shift.to(z.dtype)

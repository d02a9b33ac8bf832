"""Spatial tiling (approximate, blended) and the bounded memory of chunked decoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from suv.vae.metrics import psnr
from suv.vae.tiling import tile_starts, tiled_apply

from .conftest import PeakTensorMemory, random_model


@pytest.mark.parametrize("size, tile, overlap", [(64, 64, 16), (64, 32, 8), (72, 32, 8), (40, 16, 8)])
def test_tiles_cover_with_overlap(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, size) == size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("up, down", [(8, 1), (1, 8)])
def test_blending_reproduces_a_local_function_exactly(up, down):
    # A per-pixel function has no context to lose at tile borders: tiled == untiled.
    x = torch.randn(1, 2, 3, 48, 40)

    def fn(t):
        t = torch.tanh(t) * 2
        return F.interpolate(t, scale_factor=(1, up, up)) if up > 1 else F.avg_pool3d(t, (1, down, down))

    torch.testing.assert_close(tiled_apply(fn, x, tile=16, overlap=8, up=up, down=down), fn(x), rtol=1e-5, atol=1e-5)


def test_model_spatial_tiling_is_close_to_untiled():
    model = random_model("tiny")
    z = torch.randn(1, 32, 2, 12, 12)
    with torch.inference_mode():
        reference = model.decode(z, chunked=False)
        model.enable_tiling(spatial_tile=96, spatial_overlap=32)  # 1 tile covers the 96x96 frame: exact
        torch.testing.assert_close(model.decode(z), reference, rtol=0, atol=1e-4)
        model.enable_tiling(spatial_tile=64, spatial_overlap=32)  # 2x2 blended tiles: approximate
        tiled = model.decode(z)
    assert tiled.shape == reference.shape
    assert psnr(tiled.add(1).div(2), reference.add(1).div(2)) > 25


def working_memory(fn) -> tuple[int, torch.Tensor]:
    """Peak bytes of tensors allocated while ``fn`` runs, excluding its output."""
    with torch.inference_mode():
        meter = PeakTensorMemory()
        with meter:
            out = fn()
    return meter.peak - out.untyped_storage().nbytes(), out


def test_chunked_decode_memory_does_not_grow_with_frames():
    model = random_model("tiny")
    model.enable_tiling(t_chunk_dec=2)
    z = torch.randn(1, 32, 16, 4, 4)  # 121 frames
    peaks = {}
    for t_lat in (5, 16):  # 33 and 121 frames
        peaks["chunked", t_lat] = working_memory(lambda: model.decode(z[:, :, :t_lat]))[0]
        peaks["direct", t_lat] = working_memory(lambda: model.decode(z[:, :, :t_lat], chunked=False))[0]
    assert peaks["chunked", 16] <= 1.05 * peaks["chunked", 5]
    assert peaks["direct", 16] > 2.5 * peaks["direct", 5]  # the meter does see activations that grow with T

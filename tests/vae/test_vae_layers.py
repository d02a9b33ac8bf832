"""Building blocks against naive formulations, and streaming (chunked) layers against their direct pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from suv.vae.causal_cache import CausalCache
from suv.vae.layers import AttnBlock, CausalConv3d, LayerNorm, Spatial2xTime2x3DUpsample


def run_chunked(layer, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Feed x through ``layer`` in consecutive chunks of ``sizes`` frames (a last chunk takes any rest)."""
    t, bounds = x.shape[2], [0]
    for size in sizes:
        if bounds[-1] < t:
            bounds.append(min(bounds[-1] + size, t))
    if bounds[-1] < t:
        bounds.append(t)
    cache, outs = CausalCache(), []
    for start, end in zip(bounds, bounds[1:]):
        cache.final = end == t
        outs.append(layer(x[:, :, start:end], cache))
    return torch.cat(outs, dim=2)


def naive_upsample(layer: Spatial2xTime2x3DUpsample, x: torch.Tensor) -> torch.Tensor:
    """Spec 1.5: frame 0 in space only; frames 1.. x2 in time with F.interpolate, then x2 in space; then conv."""
    space = dict(scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
    first = F.interpolate(x[:, :, :1], **space)
    if x.shape[2] == 1:
        return layer.conv(first)
    kwargs = {"align_corners": False} if layer.t_interpolation == "trilinear" else {}
    rest = F.interpolate(x[:, :, 1:], scale_factor=(2, 1, 1), mode=layer.t_interpolation, **kwargs)
    rest = F.interpolate(rest, **space)
    return layer.conv(torch.cat([first, rest], dim=2))


@pytest.mark.parametrize("mode", ["trilinear", "nearest"])
@pytest.mark.parametrize("t", [1, 2, 3, 6])
def test_upsampler_matches_interpolate(mode, t):
    layer = Spatial2xTime2x3DUpsample(4, 5, mode)
    x = torch.randn(2, 4, t, 3, 5)
    out = layer(x)
    assert out.shape == (2, 5, 2 * t - 1, 6, 10)
    torch.testing.assert_close(out, naive_upsample(layer, x), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, 9), sizes=st.lists(st.integers(1, 4), min_size=1, max_size=6),
       mode=st.sampled_from(["trilinear", "nearest"]))  # fmt: skip
def test_upsampler_streaming_matches_direct_for_any_split(t, sizes, mode):
    torch.manual_seed(0)
    layer = Spatial2xTime2x3DUpsample(3, 3, mode)
    x = torch.randn(1, 3, t, 2, 3)
    torch.testing.assert_close(run_chunked(layer, x, sizes), layer(x), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, 12), sizes=st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_causal_conv_streaming_matches_direct_for_any_split(t, sizes):
    torch.manual_seed(0)
    conv = CausalConv3d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, t, 4, 4)
    torch.testing.assert_close(run_chunked(conv, x, sizes), conv(x), rtol=1e-5, atol=1e-5)


def test_causal_conv_replicates_first_frame():
    conv = CausalConv3d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 4, 5, 5)
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)
    expected = F.conv3d(padded, conv.conv.weight, conv.conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), expected, rtol=1e-6, atol=1e-6)
    # strided: T -> (T - 1) // 2 + 1
    assert CausalConv3d(2, 3, 3, stride=2)(torch.randn(1, 2, 9, 8, 8)).shape == (1, 3, 5, 3, 3)


def test_layernorm_normalises_channels_per_position():
    norm = LayerNorm(6)
    with torch.no_grad():
        norm.norm.weight.uniform_(0.5, 1.5)
        norm.norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 3, 4, 5)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.norm.weight.view(1, -1, 1, 1, 1) + norm.norm.bias.view(
        1, -1, 1, 1, 1
    )
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_is_single_head_per_frame():
    block = AttnBlock(8)
    x = torch.randn(2, 8, 3, 4, 5)
    h = block.norm(x)
    q, k, v = (F.conv3d(h, m.conv.weight, m.conv.bias) for m in (block.q, block.k, block.v))
    out = torch.empty_like(x)
    for b in range(2):
        for t in range(3):
            qf, kf, vf = (m[b, :, t].reshape(8, -1).T for m in (q, k, v))  # (H*W, C)
            attn = torch.softmax(qf @ kf.T / 8**0.5, dim=-1) @ vf
            out[b, :, t] = attn.T.reshape(8, 4, 5)
    expected = x + F.conv3d(out, block.proj_out.conv.weight, block.proj_out.conv.bias)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)

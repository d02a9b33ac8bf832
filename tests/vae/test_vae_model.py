"""WFVAE: released key layout, config, shapes, chunked == direct, causality, latents, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suv.vae import PRESETS, WFVAE, WFVAEConfig
from suv.vae.config import V15_SCALE, V15_SHIFT

from .conftest import random_model, random_video, tiny_v13_config

# Spec section 2: representative keys and shapes of the released v1.5 checkpoint (252 entries in total).
RELEASED_V15_KEYS = {
    "encoder.down1.0.weight": (160, 24, 3, 3),
    "encoder.down1.1.norm1.norm.weight": (160,),
    "encoder.down1.1.conv1.weight": (160, 160, 3, 3),
    "encoder.down1.3.conv.conv.weight": (160, 160, 3, 3, 3),
    "encoder.down2.0.weight": (320, 288, 3, 3),
    "encoder.down2.1.conv1.conv.weight": (320, 320, 3, 3, 3),
    "encoder.connect_l1.weight": (128, 24, 3, 3),
    "encoder.connect_l2.weight": (128, 24, 3, 3),
    "encoder.mid.0.conv1.conv.weight": (640, 448, 3, 3, 3),
    "encoder.mid.0.nin_shortcut.conv.weight": (640, 448, 1, 1, 1),
    "encoder.mid.1.norm.norm.weight": (640,),
    "encoder.mid.1.q.conv.weight": (640, 640, 1, 1, 1),
    "encoder.mid.1.proj_out.conv.weight": (640, 640, 1, 1, 1),
    "encoder.norm_out.norm.bias": (640,),
    "encoder.conv_out.conv.weight": (64, 640, 3, 3, 3),
    "encoder.wavelet_transform_l2.gh_v_conv.conv.weight": (1, 1, 2, 2, 2),
    "decoder.conv_in.conv.weight": (640, 32, 3, 3, 3),
    "decoder.mid.2.conv1.conv.weight": (768, 640, 3, 3, 3),
    "decoder.mid.2.nin_shortcut.conv.weight": (768, 640, 1, 1, 1),
    "decoder.up2.2.conv.conv.weight": (640, 640, 3, 3, 3),
    "decoder.up2.3.nin_shortcut.conv.weight": (768, 640, 1, 1, 1),
    "decoder.up1.0.nin_shortcut.conv.weight": (320, 640, 1, 1, 1),
    "decoder.up1.2.conv.conv.weight": (320, 320, 3, 3, 3),
    "decoder.layer.0.nin_shortcut.conv.weight": (160, 320, 1, 1, 1),
    "decoder.connect_l1.0.conv1.conv.weight": (128, 128, 3, 3, 3),
    "decoder.connect_l1.1.weight": (24, 128, 3, 3),
    "decoder.connect_l2.1.weight": (24, 128, 3, 3),
    "decoder.norm_out.norm.weight": (160,),
    "decoder.conv_out.weight": (24, 160, 3, 3),
    "decoder.inverse_wavelet_transform_out.hh_v": (1, 1, 2, 2, 2),
}
# The v1.5 ``ae`` block of Open-Sora Plan's model JSON, runtime keys included.
REFERENCE_AE_BLOCK = {
    "model_id": "wfvae", "base_channels": 160, "connect_res_layer_num": 1, "decoder_energy_flow_hidden_size": 128,
    "decoder_num_resblocks": 2, "dropout": 0.0, "encoder_energy_flow_hidden_size": 128, "encoder_num_resblocks": 2,
    "l1_dowmsample_block": "Spatial2xTime2x3DDownsample", "l1_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Spatial2xTime2x3DUpsample", "l1_upsample_wavelet": "InverseHaarWaveletTransform3D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample", "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample", "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
    "latent_dim": 32, "norm_type": "layernorm", "scale": list(V15_SCALE), "shift": list(V15_SHIFT),
    "t_interpolation": "trilinear", "use_attention": True, "from_pretrained": "/x/merged.ckpt", "dtype": "fp32",
}  # fmt: skip


def meta_model(config) -> WFVAE:
    with torch.device("meta"):
        return WFVAE.from_config(config)


def test_v15_key_layout_matches_released_checkpoint():
    sd = meta_model("v1.5").state_dict()
    assert len(sd) == 252
    for key, shape in RELEASED_V15_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k in sd for k in ("scale", "shift", "quant_conv.weight"))
    params = sum(v.numel() for k, v in meta_model("v1.5").named_parameters())
    assert round(params / 1e6, 1) == 227.0  # spec 1.1: 60.33M encoder + 166.71M decoder


def test_v13_differs_only_at_level_one():
    v13, v15 = meta_model("v1.3").state_dict(), meta_model("v1.5").state_dict()
    assert len(v13) == 260  # spec 2: v1.3 8-channel with connect_res_layer_num = 2
    assert tuple(v13["encoder.down1.3.conv.weight"].shape) == (128, 128, 3, 3)
    assert tuple(v13["decoder.up1.2.conv.weight"].shape) == (256, 256, 3, 3)
    assert tuple(v13["encoder.connect_l1.weight"].shape) == (64, 12, 3, 3)
    assert tuple(v13["encoder.wavelet_transform_l1.aa"].shape) == (1, 1, 2, 2)
    assert "encoder.wavelet_transform_l1.h_conv.conv.weight" in v15


def test_from_config_accepts_reference_json_block():
    model = meta_model(REFERENCE_AE_BLOCK)
    assert model.config == PRESETS["v1.5"]
    assert model.config.extra["model_id"] == "wfvae"
    assert WFVAEConfig.from_dict(PRESETS["tiny"].to_dict()) == PRESETS["tiny"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"base_chanels": 16}, "unknown WF-VAE config keys \\['base_chanels'\\]"),
        ({"norm_type": "groupnorm"}, "norm_type must be 'layernorm'"),
        ({"scale": [1.0] * 4}, "need latent_dim=32 values"),
        ({"l1_dowmsample_block": "Downsample"}, "level-1 blocks must be all 3D"),
        ({"t_interpolation": "bicubic"}, "t_interpolation"),
        ({"latent_dim": 0}, "latent_dim must be a positive int"),
    ],
)
def test_bad_config_is_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        WFVAE.from_config({**REFERENCE_AE_BLOCK, **change})
    with pytest.raises(ValueError, match="unknown WF-VAE preset"):
        WFVAE.from_config("v2")


@pytest.mark.parametrize("t", [1, 9, 17])
def test_shapes_8x8x8(tiny, t):
    x = random_video(t, 32, 48)
    with torch.inference_mode():
        posterior = tiny.encode(x)
        assert posterior.mean.shape == posterior.logvar.shape == (1, 32, (t - 1) // 8 + 1, 4, 6)
        video = tiny.decode(posterior.mode())
    assert video.shape == x.shape


def test_decode_returns_the_unclamped_decoder_output_and_the_writer_clamps(tiny):
    """Like the reference, ``decode`` does not clamp: pixels beyond [-1, 1] keep their values and gradients (a
    clamp would zero them); ``tensor_to_frames`` clamps when the video is written."""
    from suv.io import tensor_to_frames

    z = (40 * torch.randn(1, 32, 2, 4, 6)).requires_grad_()  # far outside the latent range: pixels leave [-1, 1]
    video = tiny.decode(z)
    outside = video.detach().abs() > 1
    assert outside.any()
    (video * outside).sum().backward()
    assert z.grad.abs().sum() > 0
    pixels = video.detach()[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
    assert torch.equal(tensor_to_frames(video.detach()), pixels)


def test_shapes_4x8x8():
    model = random_model(tiny_v13_config())
    x = random_video(9, 32, 32)
    with torch.inference_mode():
        z = model.encode(x).mode()
        assert z.shape == (1, 8, 3, 4, 4)
        assert model.decode(z).shape == x.shape


def assert_chunked_equals_direct(model: WFVAE, ts: list[int], size: int = 32) -> None:
    """Successive calls with different T on one model: chunked encode/decode within 1e-4 of the direct pass."""
    for t in ts:
        x = random_video(t, size, size, seed=t)
        with torch.inference_mode():
            direct = model.encode(x, chunked=False)
            chunked = model.encode(x, chunked=True)
            torch.testing.assert_close(chunked.mean, direct.mean, rtol=0, atol=1e-4)
            torch.testing.assert_close(chunked.logvar, direct.logvar, rtol=0, atol=1e-4)
            z = direct.mean
            torch.testing.assert_close(model.decode(z, chunked=True), model.decode(z, chunked=False), rtol=0, atol=1e-4)


def test_chunked_equals_direct_for_every_t_8x8x8():
    model = random_model("tiny")
    model.enable_tiling(t_chunk_enc=8, t_chunk_dec=2)
    assert_chunked_equals_direct(model, [1, 9, 17, 25, 33, 41, 49, 57, 1, 33])


def test_chunked_equals_direct_for_every_t_4x8x8():
    model = random_model(tiny_v13_config())
    model.enable_tiling(t_chunk_enc=4, t_chunk_dec=2)
    assert_chunked_equals_direct(model, [1, 5, 9, 13, 17, 21, 1])


@settings(max_examples=8, deadline=None)
@given(latent_t=st.integers(1, 7), enc=st.sampled_from([8, 16, 24]), dec=st.integers(1, 5),
       mode=st.sampled_from(["trilinear", "nearest"]))  # fmt: skip
def test_chunked_equals_direct_for_any_chunk_sizes(latent_t, enc, dec, mode):
    model = random_model("tiny", t_interpolation=mode)
    model.enable_tiling(t_chunk_enc=enc, t_chunk_dec=dec)
    assert_chunked_equals_direct(model, [(latent_t - 1) * 8 + 1], size=16)


def test_encoder_is_causal(tiny):
    x = random_video(25)
    changed = x.clone()
    changed[:, :, 10:] = random_video(15, seed=1)  # pixel frames >= 10 only feed latent frames >= 2
    with torch.inference_mode():
        a, b = tiny.encode(x).mean, tiny.encode(changed).mean
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2], rtol=0, atol=1e-6)
    assert (a[:, :, 2:] - b[:, :, 2:]).abs().max() > 1e-3


def test_decoder_looks_one_latent_frame_ahead(tiny):
    z = torch.randn(1, 32, 4, 4, 4)
    changed = z.clone()
    changed[:, :, 3] += 1.0
    with torch.inference_mode():
        a, b = tiny.decode(z), tiny.decode(changed)
    changed_frames = ((a - b).abs().amax(dim=(0, 1, 3, 4)) > 0).nonzero().flatten().tolist()
    # Latent frame 3 decodes to pixel frames 17..24. Each trilinear x2 upsampling lets a frame reach one output
    # frame back: level-2 frame 4 (not 5), then level-1 frame 6 (not 7), which the inverse Haar turns into pixel
    # frames 11 and 12. Everything before frame 11 is untouched.
    assert changed_frames == list(range(11, 25))


def test_latent_normalisation_is_per_channel_scale_and_shift(tiny):
    z = torch.randn(2, 32, 3, 4, 4)
    normed = tiny.normalize_latents(z)
    for c in range(32):
        torch.testing.assert_close(normed[:, c], (z[:, c] - V15_SHIFT[c]) * V15_SCALE[c])
    torch.testing.assert_close(tiny.denormalize_latents(normed), z, rtol=1e-5, atol=1e-5)


def test_posterior(tiny):
    with torch.inference_mode():
        posterior = tiny.encode(random_video(9))
    s1 = posterior.sample(torch.Generator().manual_seed(3))
    s2 = posterior.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    eps = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s1, posterior.mean + torch.exp(0.5 * posterior.logvar) * eps)
    assert posterior.mode() is posterior.mean
    assert posterior.logvar.min() >= -30 and posterior.logvar.max() <= 20


def test_posterior_kl_closed_form():
    from suv.vae.distribution import DiagonalGaussian

    mean, logvar = torch.full((1, 2, 1, 1, 1), 0.5), torch.full((1, 2, 1, 1, 1), 0.2)
    kl = DiagonalGaussian(torch.cat([mean, logvar], dim=1)).kl()
    expected = 2 * 0.5 * (0.25 + torch.exp(torch.tensor(0.2)) - 1 - 0.2)
    torch.testing.assert_close(kl, expected.view(1))


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.zeros(1, 4, 9, 32, 32), ValueError, r"\(B, 3, T, H, W\) RGB video, got shape \(1, 4, 9, 32, 32\)"),
        (torch.zeros(3, 9, 32, 32), ValueError, r"\(B, 3, T, H, W\)"),
        (torch.zeros(1, 3, 10, 32, 32), ValueError, r"\(T - 1\) % 8 == 0 \(e.g. 9 or 17\), got T=10"),
        (torch.zeros(1, 3, 9, 36, 32), ValueError, "divisible by 8, got 36x32"),
        (torch.zeros(1, 3, 9, 32, 32, dtype=torch.uint8), TypeError, "floating-point video in \\[-1, 1\\]"),
        (torch.full((1, 3, 9, 32, 32), 255.0), ValueError, "must be in \\[-1, 1\\], got values in \\[255, 255\\]"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_video_input(tiny, x, error, message):
    with pytest.raises(error, match=message):
        tiny.encode(x)


def test_bad_latent_and_tiling_arguments(tiny):
    with pytest.raises(ValueError, match=r"\(B, 32, T_lat, h, w\) latent, got shape \(1, 16, 2, 4, 4\)"):
        tiny.decode(torch.zeros(1, 16, 2, 4, 4))
    with pytest.raises(TypeError, match="floating-point latent"):
        tiny.decode(torch.zeros(1, 32, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="t_chunk_enc must be a positive multiple of 8"):
        tiny.enable_tiling(t_chunk_enc=12)
    with pytest.raises(ValueError, match="t_chunk_dec"):
        tiny.enable_tiling(t_chunk_dec=0)
    with pytest.raises(ValueError, match="spatial_overlap"):
        tiny.enable_tiling(spatial_tile=64, spatial_overlap=64)


@pytest.mark.parametrize("config", ["tiny", "v13"])
def test_channels_last_activations_give_the_standard_layout_result_and_gradients(config, monkeypatch):
    """The model runs channels-last (``ACTIVATION_LAYOUT``); the same weights in the contiguous layout give the same
    video, and gradients flow through decode and encode in both (losses through the VAE)."""
    import suv.vae.model as vae_model

    model = random_model(tiny_v13_config() if config == "v13" else config)
    x = random_video(9, 32, 32)
    z = model.encode(x).mean.detach()

    def run():
        zz, xx = z.clone().requires_grad_(), x.clone().requires_grad_()
        video = model.decode(zz)
        (video.square().mean() + model.encode(xx).mean.square().mean()).backward()
        return video.detach(), zz.grad, xx.grad

    channels_last = run()
    monkeypatch.setattr(vae_model, "ACTIVATION_LAYOUT", torch.contiguous_format)
    contiguous = run()
    for a, b in zip(channels_last, contiguous):
        assert a.is_contiguous() and torch.isfinite(a).all() and a.abs().max() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.numerics
def test_winograd_convs_match_direct_convs_and_keep_chunking_exact(monkeypatch):
    """The 3x3 convs run ``skiparse.conv3d_3x3`` (Winograd) from 1024 output pixels, F.conv3d below: forcing either
    path everywhere gives the same video and latent, and chunked stays within 1e-4 of direct on Winograd."""
    import skiparse.api

    model = random_model("tiny")
    model.enable_tiling(t_chunk_enc=8, t_chunk_dec=2)
    x = random_video(17, 32, 32)

    def run():
        with torch.inference_mode():
            z = model.encode(x).mean
            return z, model.decode(z)

    monkeypatch.setattr(skiparse.api, "_WINOGRAD_MIN_PIXELS", 1 << 62)
    direct = run()
    monkeypatch.setattr(skiparse.api, "_WINOGRAD_MIN_PIXELS", 0)
    winograd = run()
    for a, b in zip(winograd, direct):
        assert not torch.equal(a, b)  # the Winograd kernel ran
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert_chunked_equals_direct(model, [1, 17], size=32)


@pytest.mark.parametrize("chunked", [False, True])
def test_every_conv_input_stays_channels_last(chunked, monkeypatch):
    """Activations keep the model's channels-last layout through direct and chunked passes: a layer that lost it
    (e.g. a torch.cat of single-frame chunks) would make every later conv convert its input."""
    import suv.vae.layers as layers

    layouts = []

    def spy(x, weight, bias, stride, padding, context=None):
        if x.shape[2] > 1:  # a single frame's layout is ambiguous
            layouts.append(x.stride(1) == 1)  # channels innermost (a channel slice of a channels-last tensor too)
        return conv3d(x, weight, bias, stride, padding, context)

    conv3d = layers._conv3d
    monkeypatch.setattr(layers, "_conv3d", spy)
    model = random_model("tiny")
    model.enable_tiling(t_chunk_dec=2)
    z = model.encode(random_video(17, 32, 32), chunked=chunked).mean
    model.decode(z, chunked=chunked)
    assert len(layouts) > 20 and all(layouts)

"""Checkpoints: released container layouts, strict loading reports, corrupt files, atomic writes."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from suv.io import CheckpointError, atomic_path, load_state_dict_strict, unwrap_state_dict
from suv.vae import load_wfvae, save_wfvae

from .conftest import random_model, random_video


@pytest.fixture(scope="module")
def source():
    """A random tiny model and a second one standing in for non-EMA weights."""
    return random_model("tiny", seed=1), random_model("tiny", seed=2)


def outputs(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(random_video(9, 16, 16))[0]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def training_container(ema, raw):
    """The layout WF-VAE training writes: DDP-prefixed EMA weights plus raw generator/discriminator weights."""
    return {
        "epoch": 3,
        "current_step": 1000,
        "optimizer_state": {"gen_optimizer": {"state": {}, "param_groups": []}},
        "ema_state_dict": {f"module.{k}": v for k, v in ema.state_dict().items()},
        "state_dict": {"gen_model": {f"module.{k}": v for k, v in raw.state_dict().items()},
                       "dics_model": {"w": torch.zeros(1)}},  # fmt: skip
    }


def test_released_container_prefers_ema_and_strips_module_prefix(tmp_path, source):
    ema, raw = source
    path = tmp_path / "wfvae_888_dim32.ckpt"
    torch.save(training_container(ema, raw), path)
    assert_same_weights(load_wfvae(path, config="tiny"), ema)
    assert_same_weights(load_wfvae(path, config="tiny", use_ema=False), raw)
    torch.testing.assert_close(outputs(load_wfvae(path, config="tiny")), outputs(ema))


@pytest.mark.parametrize("layout", ["flat", "state_dict", "gen_model", "empty_ema"])
def test_other_container_layouts(tmp_path, source, layout):
    model = source[0]
    sd = model.state_dict()
    obj = {
        "flat": sd,
        "state_dict": {"state_dict": sd},
        "gen_model": {"state_dict": {"gen_model": sd}},
        "empty_ema": {"ema_state_dict": {}, "state_dict": {"gen_model": sd}},  # the reference skips an empty EMA
    }[layout]
    torch.save(obj, tmp_path / "m.pt")
    assert_same_weights(load_wfvae(tmp_path / "m.pt", config="tiny"), model)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_save_load_round_trip_keeps_config(tmp_path, source, suffix):
    model = random_model("tiny", seed=3, t_interpolation="nearest")
    save_wfvae(model, tmp_path / f"m{suffix}")
    loaded = load_wfvae(tmp_path / f"m{suffix}")  # config comes from the file
    assert loaded.config == model.config
    assert not loaded.training
    assert_same_weights(loaded, model)
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temp file left behind


def test_strict_loading_reports_missing_unexpected_and_mismatched(source):
    model = source[0]
    sd = dict(model.state_dict())
    del sd["decoder.conv_out.weight"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    sd["encoder.conv_out.conv.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(random_model("tiny"), sd, what="WF-VAE")
    message = str(info.value)
    assert "missing keys: 1 [decoder.conv_out.weight]" in message
    assert "unexpected keys: 1 [encoder.extra.weight]" in message
    assert "encoder.conv_out.conv.bias: checkpoint (7,) vs model (64,)" in message


def test_wrong_config_fails_loudly(tmp_path, source):
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": source[0].state_dict()}, path)
    with pytest.raises(CheckpointError, match="shape mismatches: .*base_channels|does not match the WF-VAE config"):
        load_wfvae(path, config={**source[0].config.to_dict(), "base_channels": 24})
    with pytest.raises(CheckpointError, match="missing keys: .*encoder.down1.3.conv.weight"):
        load_wfvae(path, config={**source[0].config.to_dict(), **{
            "l1_dowmsample_block": "Downsample", "l1_downsample_wavelet": "HaarWaveletTransform2D",
            "l1_upsample_block": "Upsample", "l1_upsample_wavelet": "InverseHaarWaveletTransform2D"}})  # fmt: skip


def test_corrupt_and_missing_files(tmp_path, source):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_wfvae(tmp_path / "nope.ckpt")
    path = tmp_path / "m.ckpt"
    save_wfvae(source[0], path)
    path.write_bytes(path.read_bytes()[:1000])  # truncated download
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_wfvae(path)
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_wfvae(tmp_path / "junk.safetensors")
    torch.save({"optimizer_state": {"lr": torch.ones(1)}}, tmp_path / "opt.ckpt")
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_wfvae(tmp_path / "opt.ckpt")


def test_pickled_objects_need_explicit_trust(tmp_path, source):
    path = tmp_path / "args.ckpt"
    torch.save({"args": argparse.Namespace(lr=1.0), "state_dict": source[0].state_dict()}, path)
    with pytest.raises(CheckpointError, match="weights_only=False only if you trust the file"):
        load_wfvae(path, config="tiny")
    assert_same_weights(load_wfvae(path, config="tiny", weights_only=False), source[0])


def test_unwrap_rejects_non_tensor_leaves():
    with pytest.raises(CheckpointError, match="no state dict found at state_dict"):
        unwrap_state_dict({"state_dict": {"a": 1}})


def test_atomic_path_keeps_previous_file_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"

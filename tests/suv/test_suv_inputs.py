"""Bad inputs and configs raise ValueError/TypeError naming the argument and what was expected."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from suv.models import PRESETS, SparseUMMDiT
from suv_testing import random_suv, suv_inputs


@pytest.fixture(scope="module")
def model():
    return random_suv()


@pytest.mark.parametrize("change, error, match", [
    (lambda i: i.update(hidden_states=torch.randn(2, 16, 2, 8, 12)), ValueError, r"hidden_states .*\(B, 32, T, H, W\)"),
    (lambda i: i.update(hidden_states=torch.randn(2, 32, 2, 9, 12)), ValueError, "divisible by the patch"),
    (lambda i: i.update(hidden_states=torch.randn(2, 32, 2, 8, 11)), ValueError, "divisible by the patch"),
    (lambda i: i.update(hidden_states=torch.zeros(2, 32, 2, 8, 12, dtype=torch.long)), TypeError, "floating"),
    (lambda i: i.update(encoder_hidden_states=torch.randn(3, 1, 5, 24)), ValueError, r"encoder_hidden_states .*B=2"),
    (lambda i: i.update(encoder_hidden_states=torch.randn(2, 1, 5, 7)), ValueError, "encoder_hidden_states"),
    (lambda i: i.update(encoder_attention_mask=torch.ones(2, 1, 4)), ValueError, "encoder_attention_mask"),
    (lambda i: i.update(pooled_projections=None), TypeError, "pooled_projections is required"),
    (lambda i: i.update(pooled_projections=torch.randn(2, 1, 15)), ValueError, r"pooled_projections .*16"),
    (lambda i: i.update(timestep=torch.ones(3)), ValueError, "timestep"),
    (lambda i: i.update(attention_mask=torch.ones(2, 2, 8, 10)), ValueError, "attention_mask"),
], ids=["channels", "height", "width", "int-latent", "text-batch", "text-dim", "text-mask", "no-pooled",
        "pooled-dim", "timestep", "video-mask"])  # fmt: skip
def test_bad_forward_inputs(model, change, error, match):
    inp = suv_inputs(model)
    change(inp)
    with pytest.raises(error, match=match):
        model(**inp)


def test_scalar_timestep_and_squeezed_text_are_accepted(model):
    inp = suv_inputs(model)
    inp["timestep"] = torch.tensor(300.0)
    a = model(**inp)
    inp["timestep"] = torch.full((2,), 300.0)
    inp["encoder_hidden_states"] = inp["encoder_hidden_states"][:, 0]
    inp["encoder_attention_mask"] = inp["encoder_attention_mask"][:, 0]
    inp["pooled_projections"] = inp["pooled_projections"][:, 0]
    torch.testing.assert_close(model(**inp), a, atol=0, rtol=0)


@pytest.mark.parametrize("overrides, error, match", [
    ({"num_layers": [2, 2, 2], "sparse_n": [1, 2]}, ValueError, "same odd length"),
    ({"num_layers": [2, 3, 2], "sparse_n": [1, 2, 1]}, ValueError, "even"),
    ({"head_dim": 24, "num_heads": 1}, ValueError, "multiple of 16"),
    ({"patch_size_t": 2}, ValueError, "patch_size_t"),
    ({"bogus": 1}, TypeError, "bogus"),
    ({"num_heads": 0}, ValueError, "num_heads must be a positive int, got 0"),
    ({"patch_size": 0}, ValueError, "patch_size must be a positive int"),
    ({"sparse_n": [2.0] * 7}, ValueError, "sparse_n must be a list of ints"),
    ({"num_layers": "2"}, ValueError, "num_layers must be a list of ints"),
])  # fmt: skip
def test_bad_configs(overrides, error, match):
    with pytest.raises(error, match=match):
        SparseUMMDiT.from_config(replace(PRESETS["suv-tiny"], **overrides))


def test_bad_config_dicts():
    with pytest.raises(ValueError, match="unknown SUV preset"):
        SparseUMMDiT.from_config("suv-9b")
    with pytest.raises(ValueError, match="unknown SUV config key 'foo'"):
        SparseUMMDiT.from_config({"foo": 1})
    with pytest.raises(ValueError, match="activation_fn"):
        SparseUMMDiT.from_config({"activation_fn": "relu"})
    with pytest.raises(TypeError, match="config must be"):
        SparseUMMDiT.from_config(3)


def test_config_dict_round_trip_and_the_reference_forms():
    """``to_dict`` is plain JSON that ``from_dict`` reads back; a model JSON's ``predictor`` block and MindSpeed's
    ``patch_size_thw`` give the same config; the config is a frozen dataclass like the WF-VAE's."""
    import dataclasses
    import json

    from suv.models import SUVConfig

    tiny = PRESETS["suv-tiny"]
    assert SUVConfig.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    reference = {**tiny.to_dict(), "patch_size_thw": [1, 2, 2], "dtype": "bf16"}
    del reference["patch_size"], reference["patch_size_t"]
    assert SUVConfig.from_dict({"predictor": reference}) == tiny
    assert tiny.dim == 32 and isinstance(tiny.num_layers, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.num_heads = 4

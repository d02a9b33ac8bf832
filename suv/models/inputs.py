"""Validation and normalisation of ``SparseUMMDiT.forward`` inputs: clear errors naming the argument."""
from __future__ import annotations

from typing import NamedTuple

import torch

from .config import SUVConfig


class Inputs(NamedTuple):
    timestep: torch.Tensor  # (B,) float
    text: torch.Tensor  # (B, L_txt, caption_channels)
    text_mask: torch.Tensor  # (B, L_txt), nonzero = real token
    pooled: torch.Tensor  # (B, P)


def _tensor(name: str, value, floating: bool = False) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def _squeeze_singleton(name: str, x: torch.Tensor, ndim: int, shape_doc: str) -> torch.Tensor:
    """Accept the reference's extra singleton dim 1 (e.g. ``(B, 1, L, C)``) or the plain ``ndim`` form."""
    if x.dim() == ndim + 1 and x.shape[1] == 1:
        x = x.squeeze(1)
    if x.dim() != ndim:
        raise ValueError(f"{name} must be {shape_doc}, got shape {tuple(x.shape)}")
    return x


def _same_dtype(name: str, x: torch.Tensor, weight_dtype: torch.dtype | None) -> None:
    """Outside autocast the latent meets the weights as it is: their dtypes must agree."""
    if weight_dtype is not None and x.dtype != weight_dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{name} has dtype {x.dtype} but the model's weights are {weight_dtype}; cast the inputs "
                        f"(x.to({weight_dtype})) or the model (model.to(dtype)), or run under torch.autocast")


def check_inputs(config: SUVConfig, hidden_states, timestep, encoder_hidden_states, encoder_attention_mask,
                 pooled_projections, attention_mask, weight_dtype: torch.dtype | None = None) -> Inputs:  # fmt: skip
    """Raise ``TypeError``/``ValueError`` for any input the model cannot take; return the normalised inputs.

    weight_dtype: the model's parameter dtype; ``hidden_states`` must have it (unless autocast is on), and the text
    inputs are cast to it."""
    x = _tensor("hidden_states", hidden_states, floating=True)
    cin, pt, p = config.in_channels, config.patch_size_t, config.patch_size
    if x.dim() != 5 or x.shape[1] != cin:
        raise ValueError(f"hidden_states must be a latent (B, {cin}, T, H, W), got shape {tuple(x.shape)}")
    b, _, t, h, w = x.shape
    if min(b, t, h, w) == 0:
        raise ValueError(f"hidden_states must have B, T, H, W >= 1, got shape {tuple(x.shape)}")
    _same_dtype("hidden_states", x, weight_dtype)
    if t % pt or h % p or w % p:
        raise ValueError(f"hidden_states frames/height/width {t}x{h}x{w} must be divisible by the patch "
                         f"({pt}, {p}, {p})")  # fmt: skip
    if pooled_projections is None:
        raise TypeError("pooled_projections is required: the CLIP pooled text embedding (B, 1, "
                        f"{config.pooled_projection_dim})")  # fmt: skip
    if encoder_hidden_states is None:
        raise TypeError(f"encoder_hidden_states is required: T5 features (B, 1, L_txt, {config.caption_channels})")

    if not isinstance(timestep, torch.Tensor):
        timestep = torch.tensor(float(timestep))
    timestep = timestep.to(x.device).float().reshape(-1)
    if timestep.numel() == 1:
        timestep = timestep.expand(b)
    if timestep.shape != (b,):
        raise ValueError(f"timestep must be a scalar or (B,) = ({b},), got shape {tuple(timestep.shape)}")

    cap = config.caption_channels
    text = _squeeze_singleton("encoder_hidden_states", _tensor("encoder_hidden_states", encoder_hidden_states, True),
                              3, f"(B, 1, L_txt, {cap})")  # fmt: skip
    if text.shape[0] != b or text.shape[2] != cap:
        raise ValueError(f"encoder_hidden_states must be (B={b}, 1, L_txt, {cap}), got shape "
                         f"{tuple(encoder_hidden_states.shape)}")  # fmt: skip
    if text.shape[1] == 0:
        raise ValueError("encoder_hidden_states must hold at least one token (L_txt >= 1; an empty caption still "
                         "encodes to its end token), got L_txt = 0")  # fmt: skip
    if encoder_attention_mask is None:
        mask = torch.ones(b, text.shape[1], device=x.device)
    else:
        mask = _squeeze_singleton("encoder_attention_mask", _tensor("encoder_attention_mask", encoder_attention_mask),
                                  2, "(B, 1, L_txt)")  # fmt: skip
        if tuple(mask.shape) != (b, text.shape[1]):
            raise ValueError(f"encoder_attention_mask must be (B={b}, 1, L_txt={text.shape[1]}), got shape "
                             f"{tuple(encoder_attention_mask.shape)}")  # fmt: skip

    pdim = config.pooled_projection_dim
    pooled = _squeeze_singleton("pooled_projections", _tensor("pooled_projections", pooled_projections, True),
                                2, f"(B, 1, {pdim})")  # fmt: skip
    if tuple(pooled.shape) != (b, pdim):
        raise ValueError(f"pooled_projections must be (B={b}, 1, {pdim}), got shape {tuple(pooled_projections.shape)}")

    if attention_mask is not None:
        _tensor("attention_mask", attention_mask)
        if tuple(attention_mask.shape) != (b, t, h, w):
            raise ValueError(f"attention_mask must be (B, T, H, W) = {(b, t, h, w)}, got {tuple(attention_mask.shape)}")
    return Inputs(timestep, text.to(x.dtype), mask, pooled.to(x.dtype))

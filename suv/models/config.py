"""SUV constructor arguments (the reference config's names), the named presets, and reference-JSON parsing."""
from __future__ import annotations

from typing import Any, Mapping

# Constructor defaults = the released Open-Sora Plan v1.5.0 8.5B denoiser (spec 2.1).
DEFAULTS: dict[str, Any] = {
    "num_layers": [2, 4, 6, 8, 6, 4, 2],
    "sparse_n": [1, 2, 4, 8, 4, 2, 1],
    "sparse1d": True,
    "num_heads": 24,
    "head_dim": 128,
    "in_channels": 32,
    "out_channels": 32,
    "patch_size_t": 1,
    "patch_size": 2,
    "timestep_embed_dim": 1024,
    "caption_channels": 2048,
    "pooled_projection_dim": 1280,
    "double_ff": True,
    "skip_connection": True,
    "skip_connection_zero_init": True,
    "attention_bias": True,
    "ff_bias": False,
    "norm_eps": 1e-6,
    "interpolation_scale_t": 1.0,
    "interpolation_scale_h": 1.0,
    "interpolation_scale_w": 1.0,
}

# Reference JSON fields that do not change the module (training switches, dtype, names) or that every
# supported value shares; they are accepted and ignored. A value other than the listed one is refused.
_FIXED = {"activation_fn": "gelu-approximate"}
_IGNORED = {
    "model_id", "from_pretrained", "dtype", "dropout", "norm_cls", "norm_elementwise_affine", "explicit_uniform_rope",
    "use_rope", "sample_size", "sample_size_t", "gradient_checkpointing", "recompute_granularity", "recompute_method",
    "recompute_num_layers", "use_stepwise_skip", "ckpt_path",
}

_TINY = {
    "num_heads": 2, "head_dim": 16, "timestep_embed_dim": 32, "caption_channels": 24, "pooled_projection_dim": 16,
}
PRESETS: dict[str, dict[str, Any]] = {
    # The released model: 32 blocks in 7 stages, D = 3072, 8,504,661,120 parameters.
    "suv-8.5b": dict(DEFAULTS),
    # Released stage and sparsity structure at width 32: tests and the --demo (32 latent channels = WF-VAE's).
    "suv-tiny": {**DEFAULTS, **_TINY, "num_layers": [2, 2, 2, 2, 2, 2, 2]},
    # The exact released stage structure (2,4,6,8,6,4,2) at width 32, for the benchmark.
    "suv-narrow": {**DEFAULTS, **_TINY},
}


def resolve_config(config: Mapping[str, Any] | str) -> dict[str, Any]:
    """A preset name, or a reference config dict (the model JSON, or its ``predictor`` block) -> constructor kwargs.

    MindSpeed-MM's ``patch_size_thw`` is mapped to ``patch_size_t`` / ``patch_size``. Unknown keys raise.
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown SUV preset {config!r}; expected one of {sorted(PRESETS)}")
        return dict(PRESETS[config])
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict or a preset name, got {type(config).__name__}")
    if "predictor" in config and isinstance(config["predictor"], Mapping):
        config = config["predictor"]
    out = dict(DEFAULTS)
    for key, value in config.items():
        if key == "patch_size_thw":
            out["patch_size_t"], out["patch_size"] = int(value[0]), int(value[1])
        elif key in _FIXED:
            if value != _FIXED[key]:
                raise ValueError(f"config {key}={value!r} is not supported; expected {_FIXED[key]!r}")
        elif key in DEFAULTS:
            out[key] = list(value) if isinstance(value, (list, tuple)) else value
        elif key not in _IGNORED:
            raise ValueError(f"unknown SUV config key {key!r}; expected one of {sorted(DEFAULTS)}")
    return out

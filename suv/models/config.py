"""SUV architecture config (``SUVConfig``: the reference config's names), the named presets, and reference-JSON
parsing. One config style for both models: ``suv.vae.WFVAEConfig`` is the same kind of frozen dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..io.config import check_positive_ints, plain_dict, resolve

# Reference JSON fields that do not change the module (training switches, dtype, names) or that every
# supported value shares; they are accepted and ignored. A value other than the listed one is refused.
_FIXED = {"activation_fn": "gelu-approximate"}
_IGNORED = {
    "model_id", "from_pretrained", "dtype", "dropout", "norm_cls", "norm_elementwise_affine", "explicit_uniform_rope",
    "use_rope", "sample_size", "sample_size_t", "gradient_checkpointing", "recompute_granularity", "recompute_method",
    "recompute_num_layers", "use_stepwise_skip", "ckpt_path",
}  # fmt: skip
_POSITIVE_INTS = ("num_heads", "head_dim", "in_channels", "out_channels", "patch_size_t", "patch_size", "timestep_embed_dim",
             "caption_channels", "pooled_projection_dim")  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SUVConfig:
    """Architecture of a SUV denoiser. Defaults are the released Open-Sora Plan v1.5.0 8.5B model (spec 2.1).

    Stage ``s`` has ``num_layers[s]`` blocks (an even count: single/group-skip pairs) with Skiparse sparsity
    ``sparse_n[s]``; both have the same odd length (the U shape).
    """

    num_layers: tuple[int, ...] = (2, 4, 6, 8, 6, 4, 2)
    sparse_n: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1)
    sparse1d: bool = True
    num_heads: int = 24
    head_dim: int = 128
    in_channels: int = 32
    out_channels: int = 32
    patch_size_t: int = 1
    patch_size: int = 2
    timestep_embed_dim: int = 1024
    caption_channels: int = 2048
    pooled_projection_dim: int = 1280
    double_ff: bool = True
    skip_connection: bool = True
    skip_connection_zero_init: bool = True
    attention_bias: bool = True
    ff_bias: bool = False
    norm_eps: float = 1e-6
    interpolation_scale_t: float = 1.0
    interpolation_scale_h: float = 1.0
    interpolation_scale_w: float = 1.0

    def __post_init__(self) -> None:
        for name in ("num_layers", "sparse_n"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
                raise ValueError(f"SUVConfig.{name} must be a list of ints, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        check_positive_ints(self, _POSITIVE_INTS)
        if len(self.num_layers) != len(self.sparse_n) or len(self.num_layers) % 2 == 0:
            raise ValueError(f"num_layers and sparse_n must have the same odd length (U shape), got "
                             f"{list(self.num_layers)} and {list(self.sparse_n)}")  # fmt: skip
        if any(n < 1 or n % 2 for n in self.num_layers):
            raise ValueError(f"every stage needs an even, positive layer count (single/group pairs), got "
                             f"{list(self.num_layers)}")  # fmt: skip
        if any(k < 1 for k in self.sparse_n):
            raise ValueError(f"sparse_n entries must be >= 1, got {list(self.sparse_n)}")
        if self.patch_size_t != 1:
            raise ValueError(f"patch_size_t must be 1 (per-frame 2D patch embedding), got {self.patch_size_t}")

    @property
    def dim(self) -> int:
        """Hidden size D = num_heads * head_dim."""
        return self.num_heads * self.head_dim

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> SUVConfig:
        """From a reference config dict (the model JSON, or its ``predictor`` block) or ``to_dict`` output.

        MindSpeed-MM's ``patch_size_thw`` is mapped to ``patch_size_t`` / ``patch_size``; runtime-only keys are
        ignored; any other unknown key raises ``ValueError`` naming it.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict or a preset name, got {type(config).__name__}")
        if isinstance(config.get("predictor"), Mapping):
            config = config["predictor"]
        names = {f.name for f in dataclasses.fields(cls)}
        out: dict[str, Any] = {}
        for key, value in config.items():
            if key == "patch_size_thw":
                out["patch_size_t"], out["patch_size"] = int(value[0]), int(value[1])
            elif key in _FIXED:
                if value != _FIXED[key]:
                    raise ValueError(f"config {key}={value!r} is not supported; expected {_FIXED[key]!r}")
            elif key in names:
                out[key] = value
            elif key not in _IGNORED:
                raise ValueError(f"unknown SUV config key {key!r}; expected one of {sorted(names)}")
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form with the reference field names (inverse of ``from_dict``)."""
        return plain_dict(self)


_TINY = dict(num_heads=2, head_dim=16, timestep_embed_dim=32, caption_channels=24, pooled_projection_dim=16)
PRESETS: dict[str, SUVConfig] = {
    # The released model: 32 blocks in 7 stages, D = 3072, 8,504,661,120 parameters.
    "suv-8.5b": SUVConfig(),
    # Released stage and sparsity structure at width 32: tests and the --demo (32 latent channels = WF-VAE's).
    "suv-tiny": SUVConfig(**_TINY, num_layers=(2, 2, 2, 2, 2, 2, 2)),
    # The exact released stage structure (2,4,6,8,6,4,2) at width 32, for the benchmark.
    "suv-narrow": SUVConfig(**_TINY),
}


def resolve_config(config: SUVConfig | Mapping[str, Any] | str) -> SUVConfig:
    """Accept a ``SUVConfig``, a reference config dict, or a preset name from ``PRESETS``."""
    return resolve(config, SUVConfig, PRESETS, "SUV")

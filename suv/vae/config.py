"""WF-VAE configuration: the reference config's field names, validation, and the released presets.

Field names (including the original spelling ``l1_dowmsample_block``) equal the ``ae`` block of Open-Sora Plan's
model JSON, so a released config loads with ``WFVAEConfig.from_dict(json["ae"])``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..io.config import check_positive_ints, plain_dict, resolve

# Per-channel latent statistics of the v1.5 8x8x8 model: scale = 1/std, shift = mean (spec 1.7).
V15_SCALE = (
    0.7031, 0.7109, 1.5391, 1.2969, 0.7109, 1.4141, 1.3828, 2.1719, 1.7266, 1.8281, 1.9141, 1.2031, 0.6875, 0.9609,
    1.6484, 1.1875, 1.5312, 1.1328, 0.8828, 0.6836, 0.8828, 0.9219, 1.6953, 1.4453, 1.5312, 0.6836, 0.7656, 0.8242,
    1.2344, 1.0312, 1.7266, 0.9492,
)  # fmt: skip
V15_SHIFT = (
    -0.2129, 0.1226, 1.6328, 0.6211, -0.8750, 0.6172, -0.5703, 0.1348, -0.2178, -0.9375, 0.3184, 0.3281, -0.0544,
    -0.1826, -0.2812, 0.4355, 0.1621, -0.2578, 0.7148, -0.7422, -0.2295, -0.2324, -1.4922, 0.6328, 1.1250, -0.2578,
    -2.1094, 1.0391, 1.1797, -1.2422, -0.2988, -0.9570,
)  # fmt: skip

_BLOCKS_3D = ("Spatial2xTime2x3DDownsample", "HaarWaveletTransform3D", "Spatial2xTime2x3DUpsample",
              "InverseHaarWaveletTransform3D")  # fmt: skip
_BLOCKS_2D = ("Downsample", "HaarWaveletTransform2D", "Upsample", "InverseHaarWaveletTransform2D")

# Keys of released configs that describe how the model was run or stored, not its architecture.
_RUNTIME_KEYS = frozenset({
    "model_id", "from_pretrained", "dtype", "use_tiling", "vae_scale_factor", "attention_type",
    "_class_name", "_diffusers_version", "_name_or_path",
})  # fmt: skip


@dataclass(frozen=True)
class WFVAEConfig:
    """Architecture of a WF-VAE. Defaults are the v1.5 8x8x8 model with 32 latent channels (``WF-VAE-M``)."""

    latent_dim: int = 32
    base_channels: int = 160
    encoder_num_resblocks: int = 2
    encoder_energy_flow_hidden_size: int = 128
    decoder_num_resblocks: int = 2
    decoder_energy_flow_hidden_size: int = 128
    connect_res_layer_num: int = 1
    use_attention: bool = True
    dropout: float = 0.0
    norm_type: str = "layernorm"
    t_interpolation: str = "trilinear"
    scale: tuple[float, ...] = V15_SCALE
    shift: tuple[float, ...] = V15_SHIFT
    # Level-1 blocks decide the temporal compression: 3D -> 8x8x8, 2D -> 4x8x8. Level 2 is always 3D.
    l1_dowmsample_block: str = "Spatial2xTime2x3DDownsample"
    l1_downsample_wavelet: str = "HaarWaveletTransform3D"
    l1_upsample_block: str = "Spatial2xTime2x3DUpsample"
    l1_upsample_wavelet: str = "InverseHaarWaveletTransform3D"
    l2_dowmsample_block: str = "Spatial2xTime2x3DDownsample"
    l2_downsample_wavelet: str = "HaarWaveletTransform3D"
    l2_upsample_block: str = "Spatial2xTime2x3DUpsample"
    l2_upsample_wavelet: str = "InverseHaarWaveletTransform3D"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "shift", tuple(float(s) for s in self.shift))
        check_positive_ints(self, ("latent_dim", "base_channels", "encoder_energy_flow_hidden_size",
                                   "decoder_energy_flow_hidden_size", "encoder_num_resblocks", "decoder_num_resblocks"))
        if not isinstance(self.connect_res_layer_num, int) or self.connect_res_layer_num < 0:
            raise ValueError(
                f"WFVAEConfig.connect_res_layer_num must be an int >= 0, got {self.connect_res_layer_num!r}"
            )
        if self.norm_type != "layernorm":
            # GroupNorm statistics span all frames of a 3D block, which makes the causal cache inexact; no released
            # WF-VAE checkpoint uses it (the paper reports it unstable).
            raise ValueError(f"WFVAEConfig.norm_type must be 'layernorm', got {self.norm_type!r}")
        if self.t_interpolation not in ("trilinear", "nearest"):
            raise ValueError(
                f"WFVAEConfig.t_interpolation must be 'trilinear' or 'nearest', got {self.t_interpolation!r}"
            )
        if self.dropout != 0.0:
            raise ValueError(f"WFVAEConfig.dropout must be 0.0 (inference model), got {self.dropout!r}")
        if len(self.scale) != self.latent_dim or len(self.shift) != self.latent_dim:
            raise ValueError(
                f"WFVAEConfig.scale and .shift need latent_dim={self.latent_dim} values each, "
                f"got {len(self.scale)} and {len(self.shift)}"
            )
        if any(s == 0.0 for s in self.scale):
            raise ValueError("WFVAEConfig.scale must not contain zeros (it is 1/std of each latent channel)")
        level2 = (self.l2_dowmsample_block, self.l2_downsample_wavelet, self.l2_upsample_block,
                  self.l2_upsample_wavelet)  # fmt: skip
        if level2 != _BLOCKS_3D:
            raise ValueError(f"level-2 blocks must be {_BLOCKS_3D}, got {level2}")
        level1 = (self.l1_dowmsample_block, self.l1_downsample_wavelet, self.l1_upsample_block,
                  self.l1_upsample_wavelet)  # fmt: skip
        if level1 not in (_BLOCKS_3D, _BLOCKS_2D):
            raise ValueError(f"level-1 blocks must be all 3D {_BLOCKS_3D} or all 2D {_BLOCKS_2D}, got {level1}")

    @property
    def l1_is_3d(self) -> bool:
        return self.l1_dowmsample_block == _BLOCKS_3D[0]

    @property
    def temporal_compression(self) -> int:
        """Pixel frames per latent frame (after the first one): 8 for 8x8x8, 4 for 4x8x8."""
        return 8 if self.l1_is_3d else 4

    spatial_compression = 8

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> WFVAEConfig:
        """Build from a reference config dict (e.g. the JSON ``ae`` block); runtime-only keys are kept in ``extra``.

        Raises ``ValueError`` naming any key that is neither an architecture field nor a known runtime key.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(config) - names - _RUNTIME_KEYS)
        if unknown:
            raise ValueError(f"unknown WF-VAE config keys {unknown}; expected a subset of {sorted(names)}")
        arch = {k: v for k, v in config.items() if k in names}
        extra = {k: v for k, v in config.items() if k in _RUNTIME_KEYS}
        return cls(**arch, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form with the reference field names (inverse of ``from_dict``)."""
        return plain_dict(self, exclude=("extra",))


def _v13_overrides(latent_dim: int) -> dict[str, Any]:
    return dict(
        latent_dim=latent_dim,
        base_channels=128,
        encoder_energy_flow_hidden_size=64,
        decoder_energy_flow_hidden_size=128,
        # MindSpeed-MM's v1.3 config uses 2 (spec 1.1); the public "146M" parameter count fits 1.
        connect_res_layer_num=2,
        # Code defaults: the v1.3 per-channel statistics were not published.
        scale=(0.18215,) * latent_dim,
        shift=(0.0,) * latent_dim,
        l1_dowmsample_block=_BLOCKS_2D[0],
        l1_downsample_wavelet=_BLOCKS_2D[1],
        l1_upsample_block=_BLOCKS_2D[2],
        l1_upsample_wavelet=_BLOCKS_2D[3],
    )


PRESETS: dict[str, WFVAEConfig] = {
    # Open-Sora Plan v1.5 WF-VAE-M: 8x8x8 compression, 32 latent channels (``wfvae_888_dim32.ckpt``).
    "v1.5": WFVAEConfig(),
    # Open-Sora Plan v1.3 WF-VAE-S: 4x8x8 compression, 8 latent channels; differs from v1.5 only at level 1.
    "v1.3": WFVAEConfig(**_v13_overrides(8)),
    # Random-weight demo/test model: the v1.5 layout and latent shape at 1/10 of the widths.
    "tiny": WFVAEConfig(base_channels=16, encoder_energy_flow_hidden_size=16, decoder_energy_flow_hidden_size=16),
}


def resolve_config(config: WFVAEConfig | Mapping[str, Any] | str) -> WFVAEConfig:
    """Accept a ``WFVAEConfig``, a reference config dict, or a preset name from ``PRESETS``."""
    return resolve(config, WFVAEConfig, PRESETS, "WF-VAE")

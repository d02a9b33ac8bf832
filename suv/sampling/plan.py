"""The memory plan of a generation, per rank, before anything loads (``suv-generate --dry-run``).

Weights come from meta-device builds of the four models (exact parameter and buffer bytes, no memory used).
Activations come from the shapes: the denoiser keeps a few ``(tokens, D)`` rows alive per forward (the stream, its
U-net skips, a block's projections and FFN hidden state); the chunked VAE decode keeps one latent frame's
activations at a time. The activation factors were measured on this package's CPU kernels (host RSS growth of
``suv-generate``): they are estimates, not bounds, and a GPU's allocator and kernels differ.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..io.checkpoint import is_json_path, read_json_config
from ..models import SparseUMMDiT, SUVConfig
from ..models import resolve_config as resolve_suv_config
from ..vae import WFVAE, WFVAEConfig
from ..vae.config import resolve_config as resolve_vae_config

PathLike = str | os.PathLike
MIB = 2**20
# Live (tokens x D) rows of one denoiser forward besides the stream and its skips (a block's normed input, q, k, v,
# attention output and the FFN's 4D hidden state, at their peak).
DIT_ROWS_PER_TOKEN = 16.0
# fp32 bytes per output pixel of one chunked VAE decode step, per unit of base_channels (measured on the tiny
# config at 512x1024: ~1.1 GiB).
VAE_BYTES_PER_PIXEL_CHANNEL = 17.0


def latent_shape(dit: SUVConfig, vae: WFVAEConfig, frames: int, height: int, width: int
                 ) -> tuple[int, int, int, int, int]:  # fmt: skip
    """(1, C, T_lat, H/8, W/8) for a video of ``frames`` x ``height`` x ``width``, or ValueError naming the flag."""
    tc, sc, p = vae.temporal_compression, vae.spatial_compression, dit.patch_size
    if frames < 1 or (frames - 1) % tc:
        raise ValueError(f"--frames must be 1 + a multiple of {tc} (the VAE's temporal compression), got {frames}")
    for name, n in (("height", height), ("width", width)):
        if n < 1 or n % (sc * p):
            raise ValueError(f"--{name} must be a positive multiple of {sc * p} (VAE {sc}x times patch {p}), got {n}")
    return (1, dit.in_channels, (frames - 1) // tc + 1, height // sc, width // sc)


def video_tokens(dit: SUVConfig, shape: tuple[int, ...]) -> int:
    """Video tokens of one denoiser forward on latents of ``shape`` (B, C, T, H, W)."""
    return shape[2] * (shape[3] // dit.patch_size) * (shape[4] // dit.patch_size)


def config_argument(config: Any, json_block: str) -> Any:
    """A ``--*-config`` value as a loader takes it: a JSON file read (its ``json_block`` found), else as given."""
    return read_json_config(config, json_block) if is_json_path(config) else config


def _stored_config(path: PathLike, config: Any, json_block: str, default: Any) -> Any:
    """A loader's config without reading the weights: as given, from a JSON file, from a safetensors header or a
    torch file's ``config`` entry (memory-mapped), else ``default``."""
    if config is not None:
        return config_argument(config, json_block)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get("config")
        return json.loads(stored) if stored else default
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    stored = obj.get("config") if isinstance(obj, Mapping) else None
    return stored if isinstance(stored, Mapping) else default


def checkpoint_configs(dit: PathLike, vae: PathLike, dit_config: Any = None, vae_config: Any = None
                       ) -> tuple[SUVConfig, WFVAEConfig]:  # fmt: skip
    """The SUV and WF-VAE configs ``load_suv`` / ``load_wfvae`` would use for these files, read without weights."""
    return (resolve_suv_config(_stored_config(dit, dit_config, "predictor", "suv-8.5b")),
            resolve_vae_config(_stored_config(vae, vae_config, "ae", "v1.5")))  # fmt: skip


def module_bytes(build, dtype: torch.dtype | None) -> int:
    """Bytes of the parameters and buffers of ``build()`` made on the meta device, floating ones in ``dtype``."""
    with torch.device("meta"):
        model = build()
    size = 0
    for t in [*model.parameters(), *model.buffers()]:
        item = torch.empty((), dtype=dtype).element_size() if dtype is not None and t.is_floating_point() else None
        size += t.numel() * (item or t.element_size())
    return size


def text_encoder_bytes(t5: PathLike, clip: PathLike, dtype: torch.dtype) -> int:
    """Weights of the T5 and CLIP text encoders in local directories, from their config.json alone."""
    from transformers import AutoConfig, CLIPTextModelWithProjection, T5EncoderModel

    return (module_bytes(lambda: T5EncoderModel(AutoConfig.from_pretrained(str(t5), local_files_only=True)), dtype)
            + module_bytes(lambda: CLIPTextModelWithProjection(
                AutoConfig.from_pretrained(str(clip), local_files_only=True)), dtype))  # fmt: skip


@dataclass(frozen=True)
class MemoryPlan:
    """Per-rank memory of one generation, in bytes."""

    weights: dict[str, int]  # "text", "dit", "vae"
    dit_activations: int  # one denoiser forward on this rank
    vae_activations: int  # the chunked decode (rank 0 only)
    offload: bool
    runtime: int = 0  # the process before any model (host RSS on CPU; 0 on a GPU)

    @property
    def stages(self) -> dict[str, int]:
        """Resident bytes while each stage runs: all models at once, or one at a time with offload."""
        w = self.weights
        resident = {k: (w[k] if self.offload else sum(w.values())) for k in w}
        return {"encode text": self.runtime + resident["text"],
                "denoise": self.runtime + resident["dit"] + self.dit_activations,
                "decode (rank 0)": self.runtime + resident["vae"] + self.vae_activations}  # fmt: skip

    @property
    def peak(self) -> int:
        return max(self.stages.values())

    def table(self) -> str:
        rows = [(f"weights {k}", v) for k, v in self.weights.items()]
        rows += [("activations denoise", self.dit_activations), ("activations decode", self.vae_activations)]
        rows += [("runtime (host RSS)", self.runtime)] if self.runtime else []
        rows += [(f"stage {k}", v) for k, v in self.stages.items()]
        rows.append(("peak per rank", self.peak))
        return "\n".join(f"  {name:<24}{size / MIB:10.1f} MiB" for name, size in rows)


def dit_activation_bytes(cfg: SUVConfig, shape: tuple[int, ...], dtype: torch.dtype, sequence_parallel: int = 1,
                         batch: int = 1) -> int:  # fmt: skip
    """Peak activations of one denoiser forward on latents ``shape``: this rank's ``tokens / S`` rows of D for the
    stream, its skips and a block's transients, plus the gathered output of the whole sequence."""
    tokens = video_tokens(cfg, shape)
    item = torch.empty((), dtype=dtype).element_size()
    skips = len(cfg.num_layers) // 2 if cfg.skip_connection else 0
    rows = (1 + skips + DIT_ROWS_PER_TOKEN) * tokens // sequence_parallel * cfg.dim
    out = tokens * cfg.patch_size**2 * cfg.out_channels * 2  # gathered velocity + the fp32 latent update
    return int(batch * (rows + out) * item)


def vae_activation_bytes(cfg: WFVAEConfig, height: int, width: int, dtype: torch.dtype) -> int:
    """Peak activations of the chunked decode (one latent frame per step) of a ``height`` x ``width`` video."""
    item = torch.empty((), dtype=dtype).element_size()
    frames = cfg.temporal_compression
    return int(VAE_BYTES_PER_PIXEL_CHANNEL / 4 * item * cfg.base_channels * frames * height * width)


def memory_plan(dit: SUVConfig, vae: WFVAEConfig, text_bytes: int, frames: int, height: int, width: int,
                dtype: torch.dtype, sequence_parallel: int = 1, cfg_parallel: bool = False, guidance: bool = True,
                offload: bool = False, runtime: int = 0) -> MemoryPlan:  # fmt: skip
    """The per-rank plan of one generation (``text_bytes``: the encoders' weights, ``text_encoder_bytes``)."""
    shape = latent_shape(dit, vae, frames, height, width)
    batch = 2 if guidance and not cfg_parallel else 1
    weights = {"text": text_bytes, "dit": module_bytes(lambda: SparseUMMDiT.from_config(dit), dtype),
               "vae": module_bytes(lambda: WFVAE.from_config(vae), dtype)}  # fmt: skip
    return MemoryPlan(weights, dit_activation_bytes(dit, shape, dtype, sequence_parallel, batch),
                      vae_activation_bytes(vae, height, width, dtype), offload, runtime)  # fmt: skip

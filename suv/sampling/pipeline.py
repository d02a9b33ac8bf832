"""Text-to-video: the SUV denoiser, T5 + CLIP conditioning and the WF-VAE decoder, loaded or tiny and random.

With released weights it runs the released pipeline (121x576x1024, 50 steps, shift 7, CFG 8 with rescale 0.7).
``demo_pipeline`` builds tiny random models (SUV ``suv-tiny``, WF-VAE ``tiny``, 2-layer T5/CLIP) that run the same
code path on a CPU in seconds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..models import SparseUMMDiT, load_suv
from ..text import TextEncoders, make_tiny_encoders
from ..vae import WFVAE, load_wfvae
from .prompts import negative_prompt, positive_prompt
from .sampler import TextConditioning, initial_noise, sample

PathLike = str | os.PathLike
DEMO_T5_TOKENS = 32  # the demo's T5 length: tiny prompts, and the text mask makes padding irrelevant


@dataclass
class Pipeline:
    """The four models of text-to-video generation."""

    dit: SparseUMMDiT
    vae: WFVAE
    text: TextEncoders

    def encode(self, prompts: list[str]) -> TextConditioning:
        dtype = next(self.dit.parameters()).dtype
        hidden, mask, pooled = self.text.encode(prompts)
        return TextConditioning(hidden.to(dtype), mask, pooled.to(dtype))

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(1, C, T_lat, H/8, W/8) for a video of ``frames`` x ``height`` x ``width``, or ValueError."""
        tc, sc = self.vae.config.temporal_compression, self.vae.config.spatial_compression
        p = self.dit.patch_size
        if frames < 1 or (frames - 1) % tc:
            raise ValueError(f"--frames must be 1 + a multiple of {tc} (the VAE's temporal compression), got {frames}")
        for name, n in (("height", height), ("width", width)):
            if n % (sc * p):
                raise ValueError(f"--{name} must be a multiple of {sc * p} (VAE {sc}x times patch {p}), got {n}")
        return (1, self.dit.in_channels, (frames - 1) // tc + 1, height // sc, width // sc)

    @torch.no_grad()
    def generate(self, prompt: str, negative: str = "", frames: int = 121, height: int = 576, width: int = 1024,
                 steps: int = 50, shift: float = 7.0, guidance_scale: float = 8.0, guidance_rescale: float = 0.7,
                 seed: int = 0, progress: bool = True) -> torch.Tensor:  # fmt: skip
        """Returns the decoded video ``(1, 3, frames, height, width)``, nominally in [-1, 1] (not clamped: the video
        writer clamps)."""
        shape = self.latent_shape(frames, height, width)
        cond = self.encode([positive_prompt(prompt)])
        uncond = self.encode([negative_prompt(negative)]) if guidance_scale > 1.0 else None
        dtype = next(self.dit.parameters()).dtype
        device = next(self.dit.parameters()).device
        noise = initial_noise(shape, seed, dtype=dtype, device=device)
        latents = sample(self.dit, noise, cond, uncond, steps=steps, shift=shift, guidance_scale=guidance_scale,
                         guidance_rescale=guidance_rescale, progress=progress)  # fmt: skip
        vae_dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(self.vae.denormalize_latents(latents.to(vae_dtype)))


def demo_pipeline(workdir: PathLike, seed: int = 0) -> Pipeline:
    """Tiny random models (T5/CLIP written to ``workdir`` and loaded back like real ones)."""
    torch.manual_seed(seed)
    dit = SparseUMMDiT.from_config("suv-tiny").eval()
    vae = WFVAE.from_config("tiny").eval()
    t5, clip = make_tiny_encoders(workdir, dit.config.caption_channels, dit.config.pooled_projection_dim, seed)
    return Pipeline(dit, vae, TextEncoders.load(t5, clip, max_length=DEMO_T5_TOKENS))


def load_pipeline(dit: PathLike, vae: PathLike, t5: PathLike, clip: PathLike,
                  dit_config: Mapping[str, Any] | str | None = None, vae_config: Mapping[str, Any] | str | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float16) -> Pipeline:  # fmt: skip
    """The four models from checkpoint files and local encoder directories, all on ``device`` in ``dtype``."""
    return Pipeline(load_suv(dit, config=dit_config, device=device, dtype=dtype),
                    load_wfvae(vae, config=vae_config, device=device, dtype=dtype),
                    TextEncoders.load(t5, clip, device=device, dtype=dtype))  # fmt: skip

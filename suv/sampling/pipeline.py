"""Text-to-video: the SUV denoiser, T5 + CLIP conditioning and the WF-VAE decoder, loaded or tiny and random.

With released weights it runs the released pipeline (121x576x1024, 50 steps, shift 7, CFG 8 with rescale 0.7).
``demo_pipeline`` builds tiny random models (SUV ``suv-tiny``, WF-VAE ``tiny``, 2-layer T5/CLIP) that run the same
code path on a CPU in seconds.

Each model may be given built, or as a function that builds it on the device: the pipeline builds it when a stage
first needs it. With ``offload=True`` it also drops each model after its stage (text encoders after encoding, the
denoiser after sampling, the VAE after decoding), so only one model is resident at a time.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist

from ..models import SparseUMMDiT, SUVConfig, load_suv
from ..models import resolve_config as resolve_suv_config
from ..parallel import GenerationGroups
from ..text import TextEncoders, make_tiny_encoders
from ..vae import WFVAE, WFVAEConfig, load_wfvae
from ..vae.config import resolve_config as resolve_vae_config
from .plan import checkpoint_configs, latent_shape
from .prompts import negative_prompt, positive_prompt
from .sampler import TextConditioning, initial_noise, sample

PathLike = str | os.PathLike
DEMO_T5_TOKENS = 32  # the demo's T5 length: tiny prompts, and the text mask makes padding irrelevant
DEMO_VAE = "tiny"


def _params_of(model: Any) -> torch.Tensor:
    return next(model.parameters())


@dataclass
class Pipeline:
    """The models of text-to-video generation: each built, or a zero-argument function building it on the device.

    dit_config / vae_config: needed only when the denoiser / VAE is given as a function (they fix the latent
    shape before the model exists).
    """

    dit: SparseUMMDiT | Callable[[], SparseUMMDiT]
    vae: WFVAE | Callable[[], WFVAE]
    text: TextEncoders | Callable[[], TextEncoders]
    dit_config: SUVConfig | None = None
    vae_config: WFVAEConfig | None = None
    offload: bool = False
    _builders: dict[str, Callable[[], Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name, kind in (("dit", SparseUMMDiT), ("vae", WFVAE), ("text", TextEncoders)):
            if not isinstance(getattr(self, name), kind):
                self._builders[name] = getattr(self, name)
        self.dit_config = self.dit.config if isinstance(self.dit, SparseUMMDiT) else self.dit_config
        self.vae_config = self.vae.config if isinstance(self.vae, WFVAE) else self.vae_config
        if self.dit_config is None or self.vae_config is None:
            raise ValueError("Pipeline: give dit_config and vae_config when the denoiser or the VAE is a builder")

    def model(self, name: str) -> Any:
        """The model ``name`` ("dit", "vae", "text"), built now if it was given as a function."""
        if name in self._builders and not isinstance(getattr(self, name), (SparseUMMDiT, WFVAE, TextEncoders)):
            setattr(self, name, self._builders[name]())
        return getattr(self, name)

    def release(self, name: str) -> None:
        """With ``offload``, drop the model ``name`` (if the pipeline can build it again) and free its memory."""
        if self.offload and name in self._builders:
            setattr(self, name, self._builders[name])
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(1, C, T_lat, H/8, W/8) for a video of ``frames`` x ``height`` x ``width``, or ValueError."""
        return latent_shape(self.dit_config, self.vae_config, frames, height, width)

    def encode(self, prompts: list[str], dtype: torch.dtype) -> TextConditioning:
        hidden, mask, pooled = self.model("text").encode(prompts)
        return TextConditioning(hidden.to(dtype), mask, pooled.to(dtype))

    @torch.no_grad()
    def denoise(self, prompt: str, negative: str = "", frames: int = 121, height: int = 576, width: int = 1024,
                steps: int = 50, shift: float = 7.0, guidance_scale: float = 8.0, guidance_rescale: float = 0.7,
                seed: int = 0, progress: bool = True, groups: GenerationGroups | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:  # fmt: skip
        """The final latents ``(1, C, T_lat, H/8, W/8)`` (before decoding), the same on every rank of ``groups``.

        dtype: the denoiser's, when it is not built yet (default: the built denoiser's).
        """
        shape = self.latent_shape(frames, height, width)
        if dtype is None:
            dtype = _params_of(self.model("dit")).dtype
        cond = self.encode([positive_prompt(prompt)], dtype)
        uncond = self.encode([negative_prompt(negative)], dtype) if guidance_scale > 1.0 else None
        self.release("text")
        dit = self.model("dit")
        device = _params_of(dit).device
        cond, uncond = (None if c is None else TextConditioning(*(t.to(device) for t in (c.hidden, c.mask, c.pooled)))
                        for c in (cond, uncond))  # fmt: skip
        noise = initial_noise(shape, seed, dtype=dtype, device=device)
        latents = sample(dit, noise, cond, uncond, steps=steps, shift=shift, guidance_scale=guidance_scale,
                         guidance_rescale=guidance_rescale, progress=progress, groups=groups)  # fmt: skip
        del dit
        self.release("dit")
        return latents

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> video ``(1, 3, frames, height, width)``, nominally in [-1, 1] (not clamped: the video writer
        clamps). Decoded in temporal chunks with the causal cache (exact, one latent frame's activations at a time)."""
        vae = self.model("vae")
        param = _params_of(vae)
        video = vae.decode(vae.denormalize_latents(latents.to(device=param.device, dtype=param.dtype)), chunked=True)
        del vae
        self.release("vae")
        return video

    def generate(self, prompt: str, negative: str = "", frames: int = 121, height: int = 576, width: int = 1024,
                 steps: int = 50, shift: float = 7.0, guidance_scale: float = 8.0, guidance_rescale: float = 0.7,
                 seed: int = 0, progress: bool = True) -> torch.Tensor:  # fmt: skip
        """Returns the decoded video ``(1, 3, frames, height, width)`` (``denoise`` then ``decode``)."""
        return self.decode(self.denoise(prompt, negative, frames, height, width, steps, shift, guidance_scale,
                                        guidance_rescale, seed, progress))  # fmt: skip


def demo_pipeline(workdir: PathLike, seed: int = 0, dit_config: SUVConfig | Mapping[str, Any] | str = "suv-tiny",
                  offload: bool = False, vae_config: WFVAEConfig | Mapping[str, Any] | str = DEMO_VAE
                  ) -> Pipeline:  # fmt: skip
    """Tiny random models (T5/CLIP written to ``workdir`` and loaded back like real ones), each from its own seed,
    built when needed (``dit_config`` / ``vae_config``: default ``suv-tiny`` / ``tiny``). Under torch.distributed rank 0
    writes the encoders and the others wait, then read them: ``workdir`` must be the same directory on every rank."""
    dit_cfg, vae_cfg = resolve_suv_config(dit_config), resolve_vae_config(vae_config)
    t5, clip = make_tiny_encoders(workdir, dit_cfg.caption_channels, dit_cfg.pooled_projection_dim, seed,
                                  write=not dist.is_initialized() or dist.get_rank() == 0)
    if dist.is_initialized():
        dist.barrier()

    def dit() -> SparseUMMDiT:
        torch.manual_seed(seed)
        return SparseUMMDiT.from_config(dit_cfg).eval()

    def vae() -> WFVAE:
        torch.manual_seed(seed + 1)
        return WFVAE.from_config(vae_cfg).eval()

    pipe = Pipeline(dit, vae, lambda: TextEncoders.load(t5, clip, max_length=DEMO_T5_TOKENS), dit_cfg, vae_cfg,
                    offload)  # fmt: skip
    if not offload:
        for name in ("text", "dit", "vae"):
            pipe.model(name)
    return pipe


def load_pipeline(dit: PathLike, vae: PathLike, t5: PathLike, clip: PathLike,
                  dit_config: SUVConfig | Mapping[str, Any] | str | None = None,
                  vae_config: WFVAEConfig | Mapping[str, Any] | str | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float16, offload: bool = False
                  ) -> Pipeline:  # fmt: skip
    """The four models from checkpoint files and local encoder directories, on ``device`` in ``dtype``: all loaded
    now, or with ``offload`` each loaded when its stage runs and dropped after it."""
    parts = (lambda: load_suv(dit, config=dit_config, device=device, dtype=dtype),
             lambda: load_wfvae(vae, config=vae_config, device=device, dtype=dtype),
             lambda: TextEncoders.load(t5, clip, device=device, dtype=dtype))  # fmt: skip
    if not offload:
        return Pipeline(*(build() for build in parts))
    return Pipeline(*parts, *checkpoint_configs(dit, vae, dit_config, vae_config), offload=True)

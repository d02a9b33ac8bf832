"""``suv-generate``: prompt -> mp4 with the SUV denoiser, T5 + CLIP conditioning and the WF-VAE decoder.

With all weights given it runs the released pipeline (121x576x1024, 50 steps, shift 7, CFG 8 with rescale 0.7).
``--demo`` runs the same code path end to end on a CPU with tiny random models (SUV ``suv-tiny``, WF-VAE
``tiny``, 2-layer T5/CLIP): the video is noise-like, but every stage is the real one.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from suv.sampling import TextConditioning, initial_noise, negative_prompt, positive_prompt, sample
from suv.text import CLIPTextEncoder, T5TextEncoder

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEMO = {"frames": 9, "height": 64, "width": 64, "steps": 4, "t5_max_length": 32}


@dataclass
class Pipeline:
    """The four models of text-to-video generation."""

    dit: torch.nn.Module
    vae: torch.nn.Module
    t5: T5TextEncoder
    clip: CLIPTextEncoder

    def encode(self, prompts: list[str]) -> TextConditioning:
        hidden, mask = self.t5.encode(prompts)
        dtype = next(self.dit.parameters()).dtype
        return TextConditioning(hidden.to(dtype), mask, self.clip.encode(prompts).to(dtype))

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
        """Returns the decoded video ``(1, 3, frames, height, width)`` in [-1, 1]."""
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


def demo_pipeline(workdir: str | Path, seed: int = 0) -> Pipeline:
    """Tiny random models (T5/CLIP written to ``workdir`` and loaded back like real ones)."""
    from suv.models import SparseUMMDiT
    from suv.text import make_tiny_clip, make_tiny_t5
    from suv.vae import WFVAE

    torch.manual_seed(seed)
    dit = SparseUMMDiT.from_config("suv-tiny").eval()
    vae = WFVAE.from_config("tiny").eval()
    workdir = Path(workdir)
    make_tiny_t5(workdir / "t5", d_model=dit.config["caption_channels"], seed=seed)
    make_tiny_clip(workdir / "clip", projection_dim=dit.config["pooled_projection_dim"], seed=seed)
    t5 = T5TextEncoder(workdir / "t5", max_length=DEMO["t5_max_length"])
    return Pipeline(dit, vae, t5, CLIPTextEncoder(workdir / "clip"))


def load_pipeline(args: argparse.Namespace) -> Pipeline:
    from suv.checkpoint import load_wfvae
    from suv.suv_checkpoint import load_suv

    dtype = _DTYPES[args.dtype]
    dit = load_suv(args.dit, config=args.dit_config, device=args.device, dtype=dtype)
    vae = load_wfvae(args.vae, config=args.vae_config, device=args.device, dtype=dtype)
    t5 = T5TextEncoder(args.t5, device=args.device, dtype=dtype)
    return Pipeline(dit, vae, t5, CLIPTextEncoder(args.clip, device=args.device, dtype=dtype))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suv-generate", description="Text-to-video with Open-Sora Plan v1.5 (SUV).")
    p.add_argument("--prompt", default="a red panda eating bamboo in a forest", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="appended to the fixed negative template")
    p.add_argument("--dit", help="SUV checkpoint (.pt / .safetensors)")
    p.add_argument("--dit-config", default=None, help="SUV preset name or reference JSON (default: stored / 8.5B)")
    p.add_argument("--vae", help="WF-VAE checkpoint")
    p.add_argument("--vae-config", default=None, help="WF-VAE preset or JSON (default: stored / v1.5)")
    p.add_argument("--t5", help="local T5 v1.1 XL directory (transformers save_pretrained layout)")
    p.add_argument("--clip", help="local CLIP ViT-bigG-14 directory (CLIPTextModelWithProjection)")
    p.add_argument("--frames", type=int, default=None, help="video frames (default 121; demo 9)")
    p.add_argument("--height", type=int, default=None, help="video height (default 576; demo 64)")
    p.add_argument("--width", type=int, default=None, help="video width (default 1024; demo 64)")
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default 50; demo 4)")
    p.add_argument("--shift", type=float, default=7.0, help="sigma shift")
    p.add_argument("--guidance-scale", type=float, default=8.0, help="CFG scale (<= 1 disables CFG)")
    p.add_argument("--guidance-rescale", type=float, default=0.7, help="CFG rescale factor in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="fp16", help="weights dtype (demo: fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="video.mp4", help="output .mp4 (written atomically)")
    p.add_argument("--demo", action="store_true", help="tiny random models on CPU, no weights needed")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-generate``."""
    from suv.video_io import tensor_to_frames, write_video

    parser = _parser()
    args = parser.parse_args(argv)
    defaults = DEMO if args.demo else {"frames": 121, "height": 576, "width": 1024, "steps": 50}
    for key in ("frames", "height", "width", "steps"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if not args.demo:
        missing = [f"--{k}" for k in ("dit", "vae", "t5", "clip") if getattr(args, k) is None]
        if missing:
            parser.error(f"{', '.join(missing)} required (or use --demo for tiny random models)")
    try:
        if args.demo:
            with tempfile.TemporaryDirectory() as tmp:
                pipe = demo_pipeline(tmp, seed=args.seed)
        else:
            pipe = load_pipeline(args)
        video = pipe.generate(args.prompt, args.negative_prompt, args.frames, args.height, args.width, args.steps,
                              args.shift, args.guidance_scale, args.guidance_rescale, args.seed,
                              progress=not args.no_progress)  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"suv-generate: error: {e}\n")
    write_video(args.out, tensor_to_frames(video), fps=args.fps)
    label = " (demo: tiny RANDOM models, the content is meaningless)" if args.demo else ""
    print(f"wrote {args.out}: {args.frames} frames {args.height}x{args.width} at {args.fps:g} fps{label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

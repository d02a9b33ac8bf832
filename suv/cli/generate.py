"""``suv-generate``: prompt -> mp4 with the SUV denoiser, T5 + CLIP conditioning and the WF-VAE decoder.

With all weights given it runs the released pipeline (121x576x1024, 50 steps, shift 7, CFG 8 with rescale 0.7).
``--demo`` runs the same code path end to end on a CPU with tiny random models (``suv.sampling.demo_pipeline``):
the video is noise-like, but every stage is the real one.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from ..io import tensor_to_frames, write_video
from ..sampling import demo_pipeline, load_pipeline
from .options import DTYPES

DEMO = {"frames": 9, "height": 64, "width": 64, "steps": 4}
RELEASED = {"frames": 121, "height": 576, "width": 1024, "steps": 50}


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
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="weights dtype (demo: fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="video.mp4", help="output .mp4 (written atomically)")
    p.add_argument("--demo", action="store_true", help="tiny random models on CPU, no weights needed")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-generate``."""
    parser = _parser()
    args = parser.parse_args(argv)
    defaults = DEMO if args.demo else RELEASED
    for key in defaults:
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
            pipe = load_pipeline(args.dit, args.vae, args.t5, args.clip, args.dit_config, args.vae_config,
                                 device=args.device, dtype=DTYPES[args.dtype])  # fmt: skip
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

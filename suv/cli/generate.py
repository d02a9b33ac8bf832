"""``suv-generate``: prompt -> mp4 with the SUV denoiser, T5 + CLIP conditioning and the WF-VAE decoder.

With all weights given it runs the released pipeline (121x576x1024, 50 steps, shift 7, CFG 8 with rescale 0.7).
``--demo`` runs the same code path end to end on a CPU with tiny random models (``suv.sampling.demo_pipeline``):
the video is noise-like, but every stage is the real one.

Under ``torchrun --nproc-per-node N --no-python suv-generate ...`` the ranks share each sampling step:
``--sequence-parallel S`` splits the video tokens over S ranks, ``--cfg-parallel`` runs the two guidance branches on
two groups (N = S, or 2 x S with CFG parallelism). Every rank holds the same latents; rank 0 decodes and writes.
Every setting is checked, and ``--dry-run`` prints the per-rank memory plan, before any model loads.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile

import torch
import torch.distributed as dist

from skiparse.host import peak_rss_mib, reset_peak_rss, rss_mib
from ..io import save_checkpoint, tensor_to_frames, video_rate, write_video
from ..models import resolve_config as resolve_suv_config
from ..parallel import check_generation_layout, generation_groups
from ..sampling import demo_pipeline, load_pipeline
from ..sampling.pipeline import DEMO_VAE
from ..sampling.plan import (MIB, checkpoint_configs, config_argument, latent_shape, memory_plan, text_encoder_bytes,
                             video_tokens)  # fmt: skip
from ..text import make_tiny_encoders
from ..vae.config import resolve_config as resolve_vae_config
from .options import DTYPES

DEMO = {"frames": 9, "height": 64, "width": 64, "steps": 4}
RELEASED = {"frames": 121, "height": 576, "width": 1024, "steps": 50}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suv-generate", description="Text-to-video with Open-Sora Plan v1.5 (SUV).")
    p.add_argument("--prompt", default="a red panda eating bamboo in a forest", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="appended to the fixed negative template")
    p.add_argument("--dit", help="SUV checkpoint (.pt / .safetensors)")
    p.add_argument("--dit-config", default=None,
                   help="SUV preset name or reference JSON (default: stored / 8.5B; demo: suv-tiny)")
    p.add_argument("--vae", help="WF-VAE checkpoint")
    p.add_argument("--vae-config", default=None, help="WF-VAE preset or JSON (default: stored / v1.5; demo: tiny)")
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
    p.add_argument("--fps", type=float, default=24.0, help="frame rate of the mp4 (positive)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="weights dtype (demo: fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device (under torchrun with cuda: each rank's cuda:LOCAL_RANK)")
    p.add_argument("--out", default="video.mp4", help="output .mp4 (written atomically)")
    p.add_argument("--latents-out", default=None, help="also save the final latents (before decoding) to this "
                   ".safetensors file (written atomically), e.g. to compare runs without the lossy mp4")
    p.add_argument("--sequence-parallel", type=int, default=1, metavar="S",
                   help="split each forward's video tokens over S ranks (torchrun; S divides heads and tokens)")
    p.add_argument("--cfg-parallel", action="store_true",
                   help="run the two guidance branches on two groups of ranks (torchrun; needs --guidance-scale > 1)")
    p.add_argument("--offload", action="store_true", help="keep each model on the device only while it runs")
    p.add_argument("--dry-run", action="store_true", help="print the per-rank memory plan and exit, loading nothing")
    p.add_argument("--demo", action="store_true", help="tiny random models on CPU, no weights needed")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _check_values(args: argparse.Namespace) -> None:
    """ValueError naming the flag for values argparse accepts but the pipeline cannot use."""
    for flag in ("guidance_scale", "guidance_rescale", "shift"):
        if not math.isfinite(getattr(args, flag)):
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number, got {getattr(args, flag)}")
    if not 0.0 <= args.guidance_rescale <= 1.0:
        raise ValueError(f"--guidance-rescale must be in [0, 1], got {args.guidance_rescale}")
    if args.shift <= 0:
        raise ValueError(f"--shift must be positive, got {args.shift}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    try:
        video_rate(args.fps)
    except ValueError as e:
        raise ValueError(f"--{e}") from None
    if args.latents_out is not None and not args.latents_out.endswith(".safetensors"):
        raise ValueError(f"--latents-out must name a .safetensors file, got {args.latents_out!r}")


def _world() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed's, else torchrun's environment, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _device_memory(device: torch.device) -> tuple[int, str] | None:
    """(bytes a rank may use, what they are): the GPU's memory, or host RAM shared by this node's ranks; None when
    the device is not here (a plan made for another machine)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(device).total_memory, f"{device} memory"
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total // ranks, "host RAM" + (f" / {ranks} ranks on this node" if ranks > 1 else "")


def _print_plan(args, dit_cfg, vae_cfg, device, world) -> None:
    dtype = torch.float32 if args.demo else DTYPES[args.dtype]
    with tempfile.TemporaryDirectory() as tmp:
        t5, clip = ((args.t5, args.clip) if not args.demo else
                    make_tiny_encoders(tmp, dit_cfg.caption_channels, dit_cfg.pooled_projection_dim, args.seed))
        text = text_encoder_bytes(t5, clip, dtype)
    runtime = int((rss_mib() or 0) * MIB) if device.type == "cpu" else 0
    plan = memory_plan(dit_cfg, vae_cfg, text, args.frames, args.height, args.width, dtype, args.sequence_parallel,
                       args.cfg_parallel, args.guidance_scale > 1.0, args.offload, runtime)  # fmt: skip
    what = "host RSS" if device.type == "cpu" else f"{device} memory"
    print(f"memory plan per rank ({what}; {world} rank(s), --sequence-parallel {args.sequence_parallel}"
          f"{', --cfg-parallel' if args.cfg_parallel else ''}{', --offload' if args.offload else ''}; "
          f"{args.frames}x{args.height}x{args.width}, {dtype}):")  # fmt: skip
    print(plan.table())
    limit, name = _device_memory(device) or (None, "")
    if limit is not None and plan.peak > limit:
        print(f"warning: the plan's peak ({plan.peak / MIB:.0f} MiB) exceeds the {name} ({limit / MIB:.0f} MiB); "
              f"try --offload, --sequence-parallel or --cfg-parallel")  # fmt: skip


def _peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"peak {device} memory allocated {torch.cuda.max_memory_allocated(device) / MIB:.0f} MiB"
    return f"peak host RSS {peak_rss_mib():.0f} MiB (the whole process: runtime, models, activations)"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-generate``."""
    parser = _parser()
    args = parser.parse_args(argv)
    reset_peak_rss()  # the peak reported at the end is this run's
    defaults = DEMO if args.demo else RELEASED
    for key in defaults:
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if not args.demo:
        missing = [f"--{k}" for k in ("dit", "vae", "t5", "clip") if getattr(args, k) is None]
        if missing:
            parser.error(f"{', '.join(missing)} required (or use --demo for tiny random models)")
    rank, world = _world()
    device = torch.device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:  # every check before any model loads
        _check_values(args)
        if args.demo:
            dit_cfg = resolve_suv_config(config_argument(args.dit_config or "suv-tiny", "predictor"))
            vae_cfg = resolve_vae_config(config_argument(args.vae_config or DEMO_VAE, "ae"))
        else:
            dit_cfg, vae_cfg = checkpoint_configs(args.dit, args.vae, args.dit_config, args.vae_config)
        shape = latent_shape(dit_cfg, vae_cfg, args.frames, args.height, args.width)
        check_generation_layout(world, args.sequence_parallel, args.cfg_parallel, args.guidance_scale,
                                dit_cfg.num_heads, video_tokens(dit_cfg, shape))  # fmt: skip
        if args.dry_run:
            if rank == 0:
                _print_plan(args, dit_cfg, vae_cfg, device, world)
            return 0
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        groups = generation_groups(args.sequence_parallel, args.cfg_parallel, device.type)
        with tempfile.TemporaryDirectory() as tmp:
            if args.demo:
                if world > 1:  # rank 0 writes the tiny text encoders there, the ranks of this machine read them
                    shared = [tmp]
                    dist.broadcast_object_list(shared, src=0)
                    tmp = shared[0]
                pipe = demo_pipeline(tmp, args.seed, dit_cfg, args.offload, vae_cfg)
            else:
                pipe = load_pipeline(args.dit, args.vae, args.t5, args.clip, dit_cfg, vae_cfg, device=device,
                                     dtype=DTYPES[args.dtype], offload=args.offload)  # fmt: skip
            latents = pipe.denoise(args.prompt, args.negative_prompt, args.frames, args.height, args.width,
                                   args.steps, args.shift, args.guidance_scale, args.guidance_rescale, args.seed,
                                   progress=not args.no_progress and rank == 0, groups=groups,
                                   dtype=torch.float32 if args.demo else DTYPES[args.dtype])  # fmt: skip
            if rank == 0:
                if args.latents_out is not None:
                    save_checkpoint({"latents": latents}, args.latents_out,
                                    config={"prompt": args.prompt, "seed": args.seed, "steps": args.steps})
                video = pipe.decode(latents)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"suv-generate: error: {e}\n")
    if rank == 0:
        fps = float(video_rate(args.fps))
        write_video(args.out, tensor_to_frames(video), fps=fps)
        label = " (demo: tiny RANDOM models, the content is meaningless)" if args.demo else ""
        print(f"wrote {args.out}: {args.frames} frames {args.height}x{args.width} at {fps:g} fps{label}")
        if args.latents_out is not None:
            print(f"wrote {args.latents_out}: latents {tuple(latents.shape)} {latents.dtype}")
    print(f"rank {rank}: {_peak_memory(device)}" if world > 1 else _peak_memory(device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

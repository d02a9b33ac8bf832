"""``suv-vae``: reconstruct a video through a WF-VAE and report PSNR/SSIM; write random-weight demo checkpoints.

    suv-vae recon IN.mp4 OUT.mp4 --vae PATH [--frames T] [--height H --width W]
    suv-vae init OUT.ckpt --preset tiny
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ..io import CheckpointError, frames_to_tensor, read_video, resize_center_crop, tensor_to_frames, write_video
from ..vae import PRESETS, WFVAE, load_wfvae, save_wfvae
from ..vae.metrics import psnr, ssim
from .options import DTYPES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suv-vae", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    recon = sub.add_parser("recon", help="encode and decode a video, print PSNR and SSIM, write the reconstruction")
    recon.add_argument("input", help="input video (any format PyAV reads)")
    recon.add_argument("output", help="reconstructed video to write (.mp4)")
    recon.add_argument("--vae", required=True, help="WF-VAE checkpoint (.ckpt/.pt/.safetensors)")
    recon.add_argument("--config", default=None,
                       help=f"preset {sorted(PRESETS)} or JSON config; default: stored in the checkpoint, else v1.5")
    recon.add_argument("--frames", type=int, default=None,
                       help="frames to use from the start, (T - 1) %% 8 == 0; default: as many valid as available")
    recon.add_argument("--height", type=int, default=None, help="resize + center-crop height (multiple of 8)")
    recon.add_argument("--width", type=int, default=None, help="resize + center-crop width (multiple of 8)")
    recon.add_argument("--direct", action="store_true", help="single pass instead of temporal chunks (more memory)")
    recon.add_argument("--spatial-tile", type=int, default=None, help="also tile frames spatially (approximate)")
    recon.add_argument("--sample", action="store_true", help="decode a posterior sample instead of the mean")
    recon.add_argument("--seed", type=int, default=0, help="seed for --sample")
    recon.add_argument("--device", default="cpu")
    recon.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")

    init = sub.add_parser("init", help="write a random-weight checkpoint (demos and tests)")
    init.add_argument("output", help="checkpoint path (.ckpt or .safetensors)")
    init.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    init.add_argument("--seed", type=int, default=0)
    return parser


def _valid_frames(available: int, requested: int | None, tc: int) -> int:
    if requested is None:
        return (available - 1) // tc * tc + 1
    if requested < 1 or (requested - 1) % tc:
        raise ValueError(f"--frames must be >= 1 with (T - 1) % {tc} == 0, got {requested}")
    if requested > available:
        raise ValueError(f"--frames {requested} requested but the video has only {available} frames")
    return requested


def _recon(args: argparse.Namespace) -> None:
    if (args.height is None) != (args.width is None):
        raise ValueError("--height and --width must be given together")
    model = load_wfvae(args.vae, config=args.config, device=args.device, dtype=DTYPES[args.dtype])
    if not args.direct:
        model.enable_tiling(spatial_tile=args.spatial_tile)
    tc, s = model.config.temporal_compression, model.config.spatial_compression
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < s or value % s):
            raise ValueError(f"--{name} must be a positive multiple of {s}, got {value}")
    frames, fps = read_video(args.input, max_frames=args.frames)
    t = _valid_frames(len(frames), args.frames, tc)
    video = frames_to_tensor(frames[:t])
    height, width = (args.height, args.width) if args.height is not None else (video.shape[-2] // s * s, video.shape[-1] // s * s)
    if height < s or width < s:
        raise ValueError(f"frames must be at least {s}x{s}, got {video.shape[-2]}x{video.shape[-1]}")
    video = resize_center_crop(video, height, width).clamp_(-1.0, 1.0)

    with torch.inference_mode():
        x = video.to(args.device, DTYPES[args.dtype])
        start = time.perf_counter()
        posterior = model.encode(x)
        z = posterior.sample(torch.Generator(args.device).manual_seed(args.seed)) if args.sample else posterior.mode()
        encoded = time.perf_counter()
        recon = model.decode(z).float().cpu().clamp_(-1.0, 1.0)  # the pixels that are written and measured
        decoded = time.perf_counter()
    a, b = video.add(1).div(2), recon.add(1).div(2)
    write_video(args.output, tensor_to_frames(recon), fps)
    print(f"{t} frames {height}x{width} -> latent {tuple(z.shape[1:])}; "
          f"encode {encoded - start:.2f} s, decode {decoded - encoded:.2f} s")  # fmt: skip
    print(f"PSNR: {psnr(a, b):.4f} dB")
    print(f"SSIM: {ssim(a, b):.4f}")


def _init(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    model = WFVAE.from_config(args.preset)
    save_wfvae(model, args.output)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote random-weight WF-VAE preset {args.preset!r} ({params / 1e6:.2f}M parameters) to {args.output}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "recon":
            _recon(args)
        else:
            _init(args)
    except (ValueError, TypeError, OSError, CheckpointError) as e:  # OSError: FileNotFoundError, a failed write
        print(f"suv-vae {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the Winograd conv's float32 rounding means for the model: a WF-VAE decode in float32, once with the 3x3 convs
as routed (``skiparse.conv3d_3x3``: Winograd F(4x4, 3x3) on the CPU from 1,024 output pixels) and once with every
conv on ``F.conv3d`` (the ``reference`` backend), each against the same decode in float64 on ``F.conv3d``.

    python benchmarks/wfvae_accuracy.py                     # released v1.5 widths, 9x256x256, random weights
    python benchmarks/wfvae_accuracy.py --frames 17 --preset tiny

The decoder output is compared unclamped. PSNR takes the video range [-1, 1] as its peak-to-peak value (2), as
the WF-VAE evaluation does for 8-bit video mapped to [-1, 1]; an 8-bit video's own quantisation step is 2/255,
about 59 dB for a uniform rounding error, so anything far above that is invisible in a written video.
"""

from __future__ import annotations

import argparse
import math
import os

import torch

import skiparse
from skiparse.info import cpu_flags, cpu_model
from suv.vae import WFVAE


def cpu_name() -> str:
    """The CPU model, its vector extensions that matter here (AVX2 / AVX-512 / AMX) and any ISA caps in force."""
    flags = cpu_flags()
    isa = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    caps = [f"{v}={os.environ[v]}" for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(v)]
    return f"{cpu_model()} ({', '.join(isa) or 'no AVX2'})" + (f" capped by {' '.join(caps)}" if caps else "")


def decode(model: WFVAE, z: torch.Tensor, dtype: torch.dtype, backend: str) -> torch.Tensor:
    with torch.inference_mode(), skiparse.use_backend(backend):
        return model.to(dtype).decode(z.to(dtype)).double()  # decode does not clamp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="v1.5", help="WF-VAE preset (v1.5: released widths; tiny: seconds)")
    parser.add_argument("--frames", type=int, default=9, help="video frames, (T - 1) %% 8 == 0")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = WFVAE.from_config(args.preset).eval()
    latent_frames = (args.frames - 1) // model.config.temporal_compression + 1
    down = model.config.spatial_compression
    z = model.denormalize_latents(torch.randn(1, model.config.latent_dim, latent_frames,
                                              args.height // down, args.width // down))
    reference = decode(model, z, torch.float64, "reference")
    peak = reference.abs().max().item()
    print(f"WF-VAE {args.preset} decode, {args.frames}x{args.height}x{args.width}, random weights and latents, "
          f"{torch.get_num_threads()} threads | {cpu_name()} | torch {torch.__version__}")
    print(f"float64 F.conv3d output: max |y| = {peak:.3g}\n")
    print("| float32 decode, 3x3 convs on | max abs error | RMS error | PSNR vs float64 (peak-to-peak 2) |")
    print("|---|---|---|---|")
    paths = (("`F.conv3d` (oneDNN)", "reference"), ("`skiparse.conv3d_3x3` (Winograd, as routed)", "auto"))
    for label, backend in paths:
        err = decode(model, z, torch.float32, backend) - reference
        rms = err.square().mean().sqrt().item()
        psnr = 20 * math.log10(2 / rms) if rms > 0 else math.inf
        print(f"| {label} | {err.abs().max().item():.2e} | {rms:.2e} | {psnr:.1f} dB |")


if __name__ == "__main__":
    main()

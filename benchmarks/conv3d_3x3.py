"""The WF-VAE's 3x3 convs: skiparse.conv3d_3x3 (Winograd F(4x4, 3x3) on the CPU) vs F.conv3d (oneDNN), side by side.

    python benchmarks/conv3d_3x3.py --quick     # 9x128x128 video, ~1 min on 2 CPU cores
    python benchmarks/conv3d_3x3.py             # 33x256x256, the WF-VAE benchmark's size (~5 min)
    python benchmarks/conv3d_3x3.py --quick --dtype bf16

With ``--dtype bf16`` the Winograd column is the kernel on the input and weight converted to float32 (its only way
to serve bf16) against oneDNN's bf16 conv: the measurement behind ``skiparse.api.winograd_serves``, which the last
column follows.

The conv shapes are those the released-width (v1.5) WF-VAE runs when it encodes and decodes a video of the given
size, found by running the model on the meta device. Every distinct shape is timed for both kernels in alternation
(best of ``--repeats``) on channels-last float32 input, and weighted by how often the model calls it. The error
column is the max abs difference from a float64 F.conv3d, relative to the output's max.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from unittest import mock

import torch
import torch.nn.functional as F

import skiparse
from skiparse.api import winograd_serves
from skiparse.info import cpu_model
from suv.vae import WFVAE


def model_conv_shapes(frames: int, size: int) -> dict[str, collections.Counter]:
    """{"encode"/"decode": Counter of (input shape, weight shape)} of the 3x3 stride-1 convs, from a meta-device run."""
    with torch.device("meta"):
        model = WFVAE.from_config("v1.5").eval()
    seen: collections.Counter = collections.Counter()

    def record(x, weight, bias=None, *, context=None):
        if context is not None:  # timed below as one input: the kernel reads both parts alike
            x = torch.cat([context, x], dim=2)
        seen[tuple(x.shape), tuple(weight.shape)] += 1
        return F.conv3d(x, weight, bias, padding=(0, 1, 1))

    shapes = {}
    # The input range check reads values, which meta tensors do not have.
    with mock.patch.object(skiparse, "conv3d_3x3", record), mock.patch.object(model, "_check_video", lambda x: None):
        with torch.inference_mode():
            z = model.encode(torch.empty(1, 3, frames, size, size, device="meta")).mean
            shapes["encode"], seen = seen, collections.Counter()
            model.decode(z)
            shapes["decode"] = seen
    return shapes


def best_times(fns, repeats: int) -> list[float]:
    """Best time of each function over ``repeats`` rounds that call them in turn (the machine's drift hits all)."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [min(t) for t in times]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="9x128x128")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.size = 9, 128
    if not skiparse.backends.status("cpu")[0]:
        print(f"the CPU backend is off ({skiparse.backends.status('cpu')[1]}): nothing to compare")
        return 1
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"WF-VAE v1.5 3x3 convs at {args.frames}x{args.size}x{args.size}, {dtype}, {torch.get_num_threads()} threads"
          f" | {cpu_model()}")
    print(f"{'pass':7s} {'input (B,C,T,H,W)':24s} {'weight':22s} {'calls':>5s} {'winograd s':>10s} {'F.conv3d s':>10s} "
          f"{'ratio':>6s} {'rel err':>8s} routed to")
    for name, shapes in model_conv_shapes(args.frames, args.size).items():
        total_ours = total_ref = total_routed = 0.0
        for (x_shape, w_shape), calls in sorted(shapes.items(), key=lambda kv: -kv[1] * torch.Size(kv[0][0]).numel()):
            x = torch.randn(x_shape).to(dtype).contiguous(memory_format=torch.channels_last_3d)
            w = (torch.randn(w_shape) / (w_shape[1] * w_shape[2] * 9) ** 0.5).to(dtype)
            b = torch.randn(w_shape[0]).to(dtype)

            def winograd_conv():
                return torch.ops.skiparse.conv3d_3x3(x.float(), w.float(), b.float()).to(dtype)

            ours, ref = best_times([winograd_conv, lambda: F.conv3d(x, w, b, padding=(0, 1, 1))], args.repeats)
            exact = F.conv3d(x.double(), w.double(), b.double(), padding=(0, 1, 1))
            err = (winograd_conv() - exact).abs().max() / exact.abs().max()
            winograd = winograd_serves(x_shape, w_shape, dtype)
            total_ours += calls * ours
            total_ref += calls * ref
            total_routed += calls * (ours if winograd else ref)
            print(f"{name:7s} {str(x_shape):24s} {str(w_shape):22s} {calls:5d} {ours:10.3f} {ref:10.3f} "
                  f"{ref / ours:6.2f} {err:8.1e} {'winograd' if winograd else 'F.conv3d'}", flush=True)
        print(f"{name:7s} {'total (time x calls)':47s} {'':5s} {total_ours:10.2f} {total_ref:10.2f} "
              f"{total_ref / total_ours:6.2f}")
        print(f"{name:7s} {'as routed by skiparse.conv3d_3x3':47s} {'':5s} {total_routed:10.2f} {total_ref:10.2f} "
              f"{total_ref / total_routed:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Skiparse attention vs dense SDPA and vs the upstream way, at the paper's shape (the README's main job).

    python benchmarks/attention.py                 # 121x576x1024 -> 16x36x64 = 36,864 video + 512 text tokens
    python benchmarks/attention.py --dry-run       # the plan: shapes, FLOPs, ideal speedups
    python benchmarks/attention.py --dtype fp32    # CPU default: bf16 where the CPU has AMX or AVX512-BF16
    python benchmarks/attention.py --sweep         # time vs tokens, 33..241 frames at 576x1024, log-log plot
    python benchmarks/attention.py --device cuda   # on a GPU: the Triton path, 24 heads x 128, bf16, do_bench
    python benchmarks/attention.py --device cuda --quick   # k = 1, 4, 8 only: the first run on any GPU
                                                   # (benchmarks/attention_gpu.py; --dry-run works without one)

For each pattern (single, group), sparsity k and mode (fwd, fwd+bwd) it times, side by side in one run and
interleaved rep by rep (this machine is noisy; absolute times drift):
- ``skiparse``: the fused op on the selected backend (default: the best for the device),
- ``upstream``: the reference path of Open-Sora Plan (pad, einops rearrange, repeat, SDPA, inverse, mean),
- ``dense``: PyTorch SDPA on the same joint [video | text] sequence, inputs already joined (one row per mode).
Forward times come from the forward half of the forward+backward runs (with autograd recording).
It prints median ms, executed TFLOP/s and their share of the CPU's peak for the dtype (cpu_peak_tflops says how
the peak is estimated), the FLOP-ideal speedup (text included), the measured speedup over dense SDPA, the
fraction of ideal, the speedup over upstream and the peak extra memory of both paths, and writes
``results/attention_<device>_<dtype>.json`` plus a plot of measured vs ideal speedup beside it. The header names
the CPU, the ISA build of the kernels and whether AMX is used (``python -m skiparse.info`` says the same).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import skiparse
from skiparse.backends import resolve
from skiparse.host import fixed_mmap_threshold, peak_extra_mib, write_atomic
from skiparse.index import sub_count
from skiparse.info import cpu_flags, cpu_model

FWD_BWD_FLOP_FACTOR = 3.5  # 2 GEMMs forward + 5 backward (flash recomputation), as FlashAttention counts
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
SWEEP_FRAMES = (33, 65, 121, 241)  # 576x1024 video: (frames - 1) / 8 + 1 latent frames of 36x64 tokens
QUICK_KS = (1, 4, 8)  # --quick: dense through the same kernel and the two sparsities the targets name


# ------------------------------------------------------------------------------------------------ CPU peak

def cpu_ghz() -> tuple[float | None, str]:
    """The core clock in GHz and where it comes from: measured on a dependent-add chain by skiparse._C where it is
    built (a VM reports its nominal clock, below the turbo clock the kernels run at), else cpufreq's
    cpuinfo_max_freq, else the "cpu MHz" of /proc/cpuinfo."""
    try:
        from skiparse import _C

        ghz = _C.measure_clock_ghz()
        if ghz > 0:
            return ghz, "measured"
    except (ImportError, AttributeError):
        pass
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            return float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M).group(1)) / 1e3, "nominal"
    except (OSError, AttributeError):
        return None, "unknown"


def cpu_peak_tflops(dtype: str, amx: bool) -> tuple[float | None, str]:
    """Peak dense-GEMM TFLOP/s of the threads in use for `dtype`, and how it was estimated: threads x FLOP per
    cycle per core x clock (cpu_ghz), with 2 FMA ports per core: AMX 1024 FLOP/cycle (bf16/fp16 tiles, where the
    kernels use AMX), AVX512-BF16 / AVX512-FP16 dot products 128, fp32 FMA 64 on AVX-512, 32 on AVX2."""
    flags = cpu_flags()
    fp32 = 64 if "avx512f" in flags else 32
    native = {"bfloat16": "avx512_bf16", "float16": "avx512_fp16"}.get(dtype)
    if dtype != "float32" and amx:
        per_cycle, unit = 1024, "AMX"
    elif native and native in flags:
        per_cycle, unit = 128, native.upper().replace("_", "-")
    else:
        per_cycle, unit = fp32, "fp32 FMA " + ("AVX-512" if fp32 == 64 else "AVX2")
    ghz, source = cpu_ghz()
    threads = torch.get_num_threads()
    how = f"{threads} threads x {per_cycle} FLOP/cycle ({unit}) x {ghz or float('nan'):.2f} GHz ({source})"
    return (None if ghz is None else threads * per_cycle * ghz / 1e3), how


def kernels_line() -> str:
    """ISA build of the CPU kernels and AMX use, or why they are off."""
    from skiparse.info import cpu_kernels

    return cpu_kernels()


# ------------------------------------------------------------------------------------------------ FLOPs
def attention_flops(L: int, T: int, k: int, group: bool, B: int, H: int, D: int) -> float:
    """Forward FLOPs executed: per sub-sequence, 4 * (n + T)^2 * D (QK^T and PV) with n real video rows."""
    return sum(4.0 * (sub_count(s, L, k, group) + T) ** 2 * D for s in range(k)) * B * H


# ------------------------------------------------------------------------------------------------ cases
def make_case(args, device, dtype, latent=None, text_len=None):
    B, H, D = args.batch, args.heads, args.head_dim
    T = args.text if text_len is None else text_len
    t_, h_, w_ = latent or args.latent
    L = t_ * h_ * w_
    g = torch.Generator(device="cpu").manual_seed(0)

    def draw(n):
        return torch.randn(B, n, H, D, generator=g).to(device=device, dtype=dtype)

    video = [draw(L) for _ in range(3)]
    text = [draw(T) for _ in range(3)] if T else [None] * 3
    return L, video, text


def runner(kind, video, text, k, group, backend, backward):
    """A callable that runs one case once and returns (forward seconds, forward+backward seconds)."""
    q, kk, v = video
    tq, tk, tv = text
    leaves = [t for t in (*video, *text) if t is not None]

    if kind == "dense":  # plain SDPA on the joint sequence, as (B, H, S, D) strided views like a model's
        joint = [torch.cat([a, b], 1) if b is not None else a for a, b in ((q, tq), (kk, tk), (v, tv))]
        leaves = joint

        def fwd():
            return (F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in joint)),)
    else:
        name = backend if kind == "skiparse" else "reference"

        def fwd():
            with skiparse.use_backend(name):
                out, text_out = skiparse.skiparse_attention(q, kk, v, k, group, tq, tk, tv)
            return (out,) if text_out is None else (out, text_out)

    def call():
        for t in leaves:
            t.requires_grad_(backward)
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            outs = fwd()
        forward = time.perf_counter() - start
        if backward:
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        total = time.perf_counter() - start
        for t in leaves:
            t.grad = None
        return forward, total

    return call


def warm_up(args, device, dtype, build) -> None:
    """Runs every case once on a small problem: first-call costs (oneDNN kernel generation) stay out of timings."""
    for call in build(*make_case(args, device, dtype, latent=(2, 8, 8), text_len=min(args.text, 16))[1:]).values():
        call()


def interleaved(calls, reps):
    """{key: [(forward s, forward+backward s)] per rep}, {key: peak extra MiB}; rep by rep over all cases, so
    every case sees the same machine state."""
    times = {key: [] for key in calls}
    mem = {}
    for rep in range(reps):
        for key, call in calls.items():
            (fwd_s, total_s), extra = peak_extra_mib(call)
            times[key].append((fwd_s, total_s))
            mem.setdefault(key, extra)
        print(f"  rep {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    return times, mem


def _amx(dtype: str) -> bool:
    """Whether the CPU kernels run `dtype` GEMMs on AMX here."""
    from skiparse import _C

    return _C.native_lowp(dtype == "float16")


def sweep(args, device, dtype, backend, pattern, modes, peak) -> int:
    """Dense SDPA, upstream and skiparse (k = 4) from 33 to 241 frames of 576x1024 video: median time per mode
    against tokens, printed, written to results/attention_sweep_<dtype>.json and plotted on log-log axes."""
    fixed_mmap_threshold()
    backward = "fwd+bwd" in modes
    k, group = 4, pattern == "group"
    rows = []
    for frames in args.sweep_frames:
        latent = ((frames - 1) // 8 + 1, 36, 64)
        L, video, text = make_case(args, device, dtype, latent=latent)

        def build(video, text):
            calls = {"dense": runner("dense", video, text, 1, False, backend, backward)}
            for kind in ("upstream", "skiparse"):
                calls[kind] = runner(kind, video, text, k, group, backend, backward)
            return calls

        if not rows:
            warm_up(args, device, dtype, build)
        times, _ = interleaved(build(video, text), args.reps)
        for mode in modes:
            pick = 0 if mode == "fwd" else 1
            for kind, ts in times.items():
                sec = statistics.median(t[pick] for t in ts)
                fl = attention_flops(L, args.text, 1 if kind == "dense" else k, group, args.batch, args.heads,
                                     args.head_dim) * (1.0 if mode == "fwd" else FWD_BWD_FLOP_FACTOR)
                rows.append(dict(frames=frames, tokens=L + args.text, kind=kind, mode=mode, s=sec,
                                 tflops=fl / sec / 1e12, of_peak=None if peak is None else fl / sec / 1e12 / peak))
                r = rows[-1]
                print(f"{frames:>4} frames {r['tokens']:>7} tokens {mode:<8}{kind:<10}{sec:>9.3f} s"
                      f"{r['tflops']:>8.3f} TFLOP/s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"attention_sweep_{args.dtype}"
    meta = dict(machine=machine_line(device), kernels=kernels_line(), pattern=f"{pattern} k={k}", reps=args.reps,
                heads=args.heads, head_dim=args.head_dim, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_atomic(args.out / f"{stem}.json", json.dumps(dict(meta=meta, rows=rows), indent=1).encode())
    plot_sweep(rows, meta, args.out / f"{stem}.png")
    print(f"# wrote {args.out / (stem + '.json')} and {stem}.png")
    return 0


def plot_sweep(rows, meta, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in rows}, key=["fwd", "fwd+bwd"].index)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for kind, style in (("dense", "k-o"), ("upstream", "C1:s"), ("skiparse", "C0-s")):
            pts = sorted((r["tokens"], r["s"]) for r in rows if r["mode"] == mode and r["kind"] == kind)
            ax.plot(*zip(*pts), style, label=kind if kind == "dense" else f"{kind} ({meta['pattern']})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens (video + text)")
        ax.set_ylabel("seconds")
        ax.set_title(mode)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("\n".join([meta["machine"], *textwrap.wrap(meta["kernels"], 85 * len(modes))]), fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ report
def machine_line(device) -> str:
    cpu = cpu_model()
    if device.type == "cuda":
        cpu += f" | GPU {torch.cuda.get_device_name(device)}"
    return f"{cpu} | {os.cpu_count()} cores | torch {torch.__version__} | {torch.get_num_threads()} threads"


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in rows if r["kind"] == "skiparse"}, key=["fwd", "fwd+bwd"].index)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        sel = [r for r in rows if r["kind"] == "skiparse" and r["mode"] == mode]
        ks = sorted({r["k"] for r in sel})
        ideal = {r["k"]: r["ideal_speedup"] for r in sel}
        ax.plot(ks, [ideal[k] for k in ks], "k--", label="FLOP-ideal")
        for pattern, marker in (("single", "o"), ("group", "s")):
            pts = sorted((r["k"], r["speedup_vs_dense"]) for r in sel if r["pattern"] == pattern)
            if pts:
                ax.plot(*zip(*pts), marker=marker, label=f"skiparse {pattern}")
            up = sorted((r["k"], r["speedup_vs_dense"] / r["speedup_vs_upstream"]) for r in sel if r["pattern"] == pattern)
            if up:
                ax.plot(*zip(*up), marker=marker, linestyle=":", alpha=0.6, label=f"upstream {pattern}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("sparsity k")
        ax.set_ylabel("speedup over dense SDPA")
        ax.set_title(mode)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(rows[0]["shape"], fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latent", type=lambda s: tuple(int(x) for x in s.split("x")), default=(16, 36, 64),
                   help="token grid T'xH'xW' (default 16x36x64: 121x576x1024 after the 8x8x8 VAE and 2x2 patches)")
    p.add_argument("--text", type=int, default=512, help="joint text tokens (T5 pads to 512)")
    p.add_argument("--heads", type=int, default=None,
                   help="attention heads (default: the released model's 24 on a GPU; 2 on the CPU, >= threads so that "
                        "PyTorch's backward uses every core)")
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    p.add_argument("--patterns", default="single,group")
    p.add_argument("--modes", default="fwd,fwd+bwd")
    p.add_argument("--dtype", choices=sorted(DTYPES) + sorted(DTYPE_ALIASES), default=None,
                   help="default: bf16 on a GPU and on CPUs with AMX or AVX512-BF16, else fp32")
    p.add_argument("--sweep", action="store_true",
                   help="time dense, upstream and skiparse (k = 4, first pattern of --patterns) at --sweep-frames "
                        "frames of 576x1024 video and plot time against tokens (log-log)")
    p.add_argument("--sweep-frames", type=lambda s: [int(x) for x in s.split(",")], default=list(SWEEP_FRAMES),
                   help="video frames of the sweep")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 peak for MFU, if not in the table")
    p.add_argument("--backend", default="auto", help="skiparse backend to time (default: best for the device)")
    p.add_argument("--reps", type=int, default=2, help="timed runs per case; the median is reported")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--dry-run", action="store_true", help="print the plan (shapes, FLOPs, ideal speedups) and exit")
    p.add_argument("--quick", action="store_true",
                   help="only the cases the targets name, k = 1, 4, 8 (on one H100 well within 10 minutes)")
    args = p.parse_args(argv)
    if args.quick:
        args.ks = list(QUICK_KS)
    if args.device.startswith("npu"):  # Ascend: benchmarks/attention_npu.py (--dry-run needs no NPU)
        import attention_npu

        return attention_npu.main(args, attention_flops, make_case, FWD_BWD_FLOP_FACTOR)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.heads = args.heads or (24 if gpu else 2)
    native_bf16 = bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})
    args.dtype = DTYPE_ALIASES.get(args.dtype, args.dtype) or ("bfloat16" if gpu or native_bf16 else "float32")
    dtype = DTYPES[args.dtype]
    B, H, D, T = args.batch, args.heads, args.head_dim, args.text
    L = args.latent[0] * args.latent[1] * args.latent[2]
    patterns = [s.strip() for s in args.patterns.split(",")]
    modes = [s.strip() for s in args.modes.split(",")]
    shape = f"video {'x'.join(map(str, args.latent))} = {L} tokens + {T} text, B={B} H={H} D={D} {args.dtype}"
    dense_flops = attention_flops(L, T, 1, False, B, H, D)
    cases = [(pat, k) for pat in patterns for k in args.ks if not (k == 1 and pat == "group")]  # k=1: one dense case
    if gpu:
        return gpu_main(args, device, dtype, shape, cases, dense_flops)
    backend = resolve(device) if args.backend == "auto" else args.backend

    print(f"# {machine_line(device)}", flush=True)
    print(f"# {kernels_line()}", flush=True)
    amx = backend == "cpu" and args.dtype != "float32" and _amx(args.dtype)
    peak, peak_how = cpu_peak_tflops(args.dtype, amx)
    print(f"# peak {args.dtype}: {'n/a' if peak is None else f'{peak:.2f}'} TFLOP/s = {peak_how}", flush=True)
    print(f"# {shape} | skiparse backend: {backend} | median of {args.reps}", flush=True)
    if args.sweep:
        return sweep(args, device, dtype, backend, patterns[0], modes, peak)
    if args.dry_run:
        print(f"{'pattern':<8}{'k':>3}{'sub-seq':>10}{'GFLOP fwd':>12}{'ideal x':>9}")
        for pat, k in cases:
            fl = attention_flops(L, T, k, pat == "group", B, H, D)
            print(f"{pat:<8}{k:>3}{L // k + T:>10}{fl / 1e9:>12.1f}{dense_flops / fl:>9.2f}")
        return 0

    fixed_mmap_threshold()
    backward = "fwd+bwd" in modes

    def build(video, text):
        calls = {("dense", "dense", 1): runner("dense", video, text, 1, False, backend, backward)}
        for pat, k in cases:
            for kind in ("skiparse", "upstream"):
                calls[(kind, pat, k)] = runner(kind, video, text, k, pat == "group", backend, backward)
        return calls

    warm_up(args, device, dtype, build)
    times, mem = interleaved(build(*make_case(args, device, dtype)[1:]), args.reps)

    rows = []
    for mode in modes:
        pick = 0 if mode == "fwd" else 1
        factor = 1.0 if mode == "fwd" else FWD_BWD_FLOP_FACTOR

        def median(key):
            return statistics.median(t[pick] for t in times[key])

        dense_s = median(("dense", "dense", 1))
        rows.append(dict(kind="dense", mode=mode, pattern="dense", k=1, ms=dense_s * 1e3,
                         gflops=dense_flops * factor / dense_s / 1e9, peak_extra_mib=mem[("dense", "dense", 1)],
                         shape=shape))
        rows[-1]["of_peak"] = None if peak is None else rows[-1]["gflops"] / 1e3 / peak
        for pat, k in cases:
            up_key = ("upstream", pat, k)
            fl = attention_flops(L, T, k, pat == "group", B, H, D)
            ours, up = median(("skiparse", pat, k)), median(up_key)
            ideal = dense_flops / fl
            rows.append(dict(
                kind="skiparse", backend=backend, mode=mode, pattern=pat, k=k, ms=ours * 1e3,
                gflops=fl * factor / ours / 1e9, ideal_speedup=ideal, speedup_vs_dense=dense_s / ours,
                fraction_of_ideal=dense_s / ours / ideal, speedup_vs_upstream=up / ours, upstream_ms=up * 1e3,
                peak_extra_mib=mem[("skiparse", pat, k)], upstream_peak_extra_mib=mem[up_key], shape=shape,
                of_peak=None if peak is None else fl * factor / ours / 1e12 / peak,
            ))

    def fmt_mib(x):
        return "n/a" if x is None else f"{x:.0f}"

    def fmt_peak(x):
        return "n/a" if x is None else f"{x:.0%}"

    head = (f"{'backend':<10}{'mode':<8}{'pattern':<8}{'k':>3}{'ms':>11}{'TFLOP/s':>9}{'of peak':>8}{'ideal x':>9}"
            f"{'vs dense':>10}"
            f"{'of ideal':>10}{'vs upstream':>13}{'extra MiB':>11}{'upstream MiB':>14}")
    print(head)
    for r in rows:
        if r["kind"] == "dense":
            print(f"{'sdpa':<10}{r['mode']:<8}{'dense':<8}{1:>3}{r['ms']:>11.1f}{r['gflops'] / 1e3:>9.3f}"
                  f"{fmt_peak(r['of_peak']):>8}{'1.00':>9}{'1.00x':>10}"
                  f"{'':>10}{'':>13}{fmt_mib(r['peak_extra_mib']):>11}{'(SDPA)':>14}")
        else:
            print(f"{r['backend']:<10}{r['mode']:<8}{r['pattern']:<8}{r['k']:>3}{r['ms']:>11.1f}{r['gflops'] / 1e3:>9.3f}"
                  f"{fmt_peak(r['of_peak']):>8}{r['ideal_speedup']:>9.2f}{r['speedup_vs_dense']:>9.2f}x{r['fraction_of_ideal']:>9.0%}"
                  f"{r['speedup_vs_upstream']:>12.2f}x{fmt_mib(r['peak_extra_mib']):>11}"
                  f"{fmt_mib(r['upstream_peak_extra_mib']):>14}")

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"attention_{device.type}_{args.dtype}"
    meta = dict(machine=machine_line(device), kernels=kernels_line(), peak_tflops=peak, peak_estimate=peak_how,
                shape=shape, reps=args.reps, backend=backend, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_atomic(args.out / f"{stem}.json", json.dumps(dict(meta=meta, rows=rows), indent=1).encode())
    plot(rows, args.out / f"{stem}.png")
    print(f"# wrote {args.out / (stem + '.json')} and {stem}.png")
    return 0


def gpu_main(args, device, dtype, shape, cases, dense_flops) -> int:
    """The Triton path on a CUDA device (``attention_gpu.py``); with ``--dry-run`` only its plan, no GPU needed."""
    import attention_gpu

    L, T = args.latent[0] * args.latent[1] * args.latent[2], args.text
    B, H, D = args.batch, args.heads, args.head_dim

    def flops(pattern, k):
        return attention_flops(L, T, k, pattern == "group", B, H, D)

    if args.dry_run:
        attention_gpu.plan(cases, flops, dense_flops, shape, FWD_BWD_FLOP_FACTOR)
        return 0
    print(f"# {machine_line(device)}", flush=True)
    modes = [s.strip() for s in args.modes.split(",")]
    _, video, text = make_case(args, device, dtype)
    name = torch.cuda.get_device_name(device)
    rows = attention_gpu.run(cases, flops, dense_flops, video, text, modes,
                             attention_gpu.datasheet_peak(name, args.peak_tflops), shape, FWD_BWD_FLOP_FACTOR)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"attention_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}.json"
    meta = dict(machine=machine_line(device), shape=shape, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_atomic(path, json.dumps(dict(meta=meta, rows=rows), indent=1).encode())
    print(f"# wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

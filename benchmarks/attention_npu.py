"""Ascend NPU half of ``benchmarks/attention.py``: Skiparse attention vs dense ``npu_fusion_attention``.

    python benchmarks/attention.py --device npu            # on a 910B: 24 heads x 128, bf16, the paper shape
    python benchmarks/attention.py --device npu --dry-run  # the plan, on any machine

Per (pattern, k, mode) it times, interleaved rep by rep on the NPU's event timer (``torch.npu.Event``), the fused
op on the ``npu`` backend and dense ``torch_npu.npu_fusion_attention`` (layout BSND) on the same joint
[video | text] sequence, and prints the median ms, TFLOP/s, the FLOP-ideal speedup and the speedup over dense.
Then it adds the layers up as the released SUV runs them (``SCHEDULE``) and prints the attention speedup over
dense next to the seed's own claim: the Open-Sora Plan v1.5 report measured the attention "over 45%" faster than
dense at 121x576x1024 on a 910B. That claim reads either as throughput (>= 1.45x) or as time saved (>= 1.82x);
both verdicts are printed. ``plan`` prints everything but the timings without an NPU.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch

import skiparse
from flop_table import print_flop_table

# (k, layers) of the released SUV: sparse_n [1, 2, 4, 8, 4, 2, 1] over num_layers [2, 4, 6, 8, 6, 4, 2]; inside a
# stage with k > 1 the blocks alternate single- and group-skip (every such stage has an even layer count).
SCHEDULE = ((1, 4), (2, 8), (4, 12), (8, 8))
CLAIM = 'attention "over 45%" faster than dense at 121x576x1024 on an Ascend 910B (Open-Sora Plan v1.5 report)'
CLAIM_THROUGHPUT, CLAIM_TIME = 1.45, 1 / (1 - 0.45)  # the two readings of "over 45%"


def schedule_layers() -> list[tuple[str, int, int]]:
    """``(pattern, k, layers)`` of the schedule: k = 1 runs single only; k > 1 half single, half group."""
    out = []
    for k, layers in SCHEDULE:
        out += [("single", 1, layers)] if k == 1 else [("single", k, layers // 2), ("group", k, layers // 2)]
    return out


def plan(cases, flops, dense_flops, shape: str, factor: float) -> None:
    """What the NPU run measures: shapes, FLOPs, FLOP-ideal speedups, the schedule and the claim it is set against."""
    print(f"# NPU plan: {shape}; median of interleaved runs on the NPU's event timer (torch.npu.Event)")
    print("# candidates: skiparse (npu backend: AscendC reorder + npu_fusion_attention), dense npu_fusion_attention "
          "(BSND) on the joint [video | text] sequence")
    print_flop_table(cases, flops, dense_flops, factor)
    layers = sum(n for _, _, n in schedule_layers())
    ideal = layers * dense_flops / sum(n * flops(p, k) for p, k, n in schedule_layers())
    print(f"# SUV schedule: {layers} layers ({', '.join(f'k={k} x{n}' for k, n in SCHEDULE)}; single/group "
          f"alternating), FLOP-ideal attention speedup {ideal:.2f}x")
    print(f"# seed's claim: {CLAIM}; met as throughput if >= {CLAIM_THROUGHPUT:.2f}x, as time saved if >= "
          f"{CLAIM_TIME:.2f}x")


def npu_timer(fn) -> float:
    """Milliseconds of one call of ``fn`` on the NPU's event timer."""
    start, end = torch.npu.Event(enable_timing=True), torch.npu.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _step(fn, leaves, backward: bool):
    """``fn`` alone, or ``fn`` then its backward with output gradients of ones (the leaves' grads cleared)."""
    if not backward:
        return fn

    def step():
        outs = fn()
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        for t in leaves:
            t.grad = None

    return step


def run(cases, flops, dense_flops, video, text, modes, fa, timer, *, reps, factor, backend="npu", scale=None):
    """Times every case (``fa``: the module with ``npu_fusion_attention``, ``timer(fn) -> ms``); returns the rows.

    Tests run this on the CPU with a stand-in ``fa``, a wall-clock ``timer`` and another skiparse backend."""
    q, k_, v = video
    tq, tk, tv = text
    H, D = q.shape[2], q.shape[3]
    scale = D**-0.5 if scale is None else scale
    joint = [torch.cat([a, b], 1) if b is not None else a for a, b in ((q, tq), (k_, tk), (v, tv))]
    leaves = [t for t in (*video, *text) if t is not None]

    def dense():
        return (fa.npu_fusion_attention(*joint, H, "BSND", scale=scale, keep_prob=1.0, sparse_mode=0)[0],)

    def ours(k, group):
        def fn():
            with skiparse.use_backend(backend):
                out, text_out = skiparse.skiparse_attention(q, k_, v, k, group, tq, tk, tv, scale=scale)
            return (out,) if text_out is None else (out, text_out)

        return fn

    candidates = {("dense", "dense", 1): (dense, joint)}
    for pat, k in cases:
        candidates[("skiparse", pat, k)] = (ours(k, pat == "group"), leaves)
    rows = []
    for mode in modes:
        backward = mode == "fwd+bwd"
        steps = {}
        for key, (fn, inputs) in candidates.items():
            for t in inputs:
                t.requires_grad_(backward)
            steps[key] = _step(fn, inputs, backward)
            with torch.set_grad_enabled(backward):
                steps[key]()  # warm-up: first-call costs stay out of the timings
        times = {key: [] for key in steps}
        for _ in range(reps):  # interleaved: every case sees the same device state
            for key, step in steps.items():
                with torch.set_grad_enabled(backward):
                    times[key].append(timer(step))
        mult = factor if backward else 1.0
        dense_ms = statistics.median(times[("dense", "dense", 1)])
        for (kind, pat, k), ms in times.items():
            fl = dense_flops if kind == "dense" else flops(pat, k)
            median = statistics.median(ms)
            rows.append(dict(kind=kind, mode=mode, pattern=pat, k=k, ms=median, tflops=fl * mult / median / 1e9,
                             ideal_speedup=dense_flops / fl, speedup_vs_dense=dense_ms / median))
    return rows


def schedule_summary(rows, mode: str) -> dict | None:
    """The schedule's attention time from the rows of ``mode``: dense per layer vs skiparse per layer type."""
    ms = {(r["pattern"], r["k"]): r["ms"] for r in rows if r["mode"] == mode and r["kind"] == "skiparse"}
    dense = [r["ms"] for r in rows if r["mode"] == mode and r["kind"] == "dense"]
    if not dense or not all((p, k) in ms for p, k, _ in schedule_layers()):
        return None
    layers = schedule_layers()
    dense_ms = dense[0] * sum(n for _, _, n in layers)
    ours_ms = sum(n * ms[(p, k)] for p, k, n in layers)
    speedup = dense_ms / ours_ms
    return dict(mode=mode, dense_ms=dense_ms, skiparse_ms=ours_ms, speedup=speedup,
                throughput_gain=speedup - 1, time_saved=1 - ours_ms / dense_ms,
                claim_met_as_throughput=speedup >= CLAIM_THROUGHPUT, claim_met_as_time=speedup >= CLAIM_TIME)


def report(rows, modes) -> list[dict]:
    """Prints the table, then per mode the schedule's attention speedup over dense next to the seed's claim."""
    print(f"{'kind':<10}{'mode':<8}{'pattern':<8}{'k':>3}{'ms':>10}{'TFLOP/s':>9}{'ideal x':>9}{'vs dense':>10}")
    for r in rows:
        print(f"{r['kind']:<10}{r['mode']:<8}{r['pattern']:<8}{r['k']:>3}{r['ms']:>10.2f}{r['tflops']:>9.1f}"
              f"{r['ideal_speedup']:>9.2f}{r['speedup_vs_dense']:>9.2f}x")
    summaries = []
    for mode in modes:
        s = schedule_summary(rows, mode)
        if s is None:
            print(f"# {mode}: the timed cases do not cover the SUV schedule (k = 1, 2, 4, 8, both patterns)")
            continue
        summaries.append(s)
        verdict = lambda met: "MET" if met else "NOT MET"  # noqa: E731
        print(f"# SUV schedule attention, {mode}: dense {s['dense_ms']:.1f} ms, skiparse {s['skiparse_ms']:.1f} ms "
              f"-> {s['speedup']:.2f}x over dense ({s['throughput_gain']:+.0%} throughput, "
              f"{s['time_saved']:.0%} less time)")
        print(f"#   seed's claim: {CLAIM}: as throughput (>= {CLAIM_THROUGHPUT:.2f}x) "
              f"{verdict(s['claim_met_as_throughput'])}; as time saved (>= {CLAIM_TIME:.2f}x) "
              f"{verdict(s['claim_met_as_time'])}")
    return summaries


def _setup(args, attention_flops):
    """The NPU run's defaults (24 heads, bf16) and what follows from the arguments: shape line, cases, modes and
    ``flops(pattern, k)``."""
    args.heads = args.heads or 24
    args.dtype = args.dtype or "bfloat16"
    B, H, D, T = args.batch, args.heads, args.head_dim, args.text
    L = args.latent[0] * args.latent[1] * args.latent[2]
    shape = f"video {'x'.join(map(str, args.latent))} = {L} tokens + {T} text, B={B} H={H} D={D} {args.dtype}"
    patterns = [s.strip() for s in args.patterns.split(",")]
    cases = [(pat, k) for pat in patterns for k in args.ks if not (k == 1 and pat == "group")]

    def flops(pattern, k):
        return attention_flops(L, T, k, pattern == "group", B, H, D)

    return shape, cases, [s.strip() for s in args.modes.split(",")], flops


def main(args, attention_flops, make_case, factor: float) -> int:
    """``benchmarks/attention.py --device npu``: the plan, or the timed run on the NPU."""
    shape, cases, _, flops = _setup(args, attention_flops)
    if args.dry_run:
        plan(cases, flops, flops("single", 1), shape, factor)
        return 0
    import torch_npu  # noqa: PLC0415  (registers the npu device; only importable where CANN is installed)

    device = torch.device(args.device)
    if device.index is None:
        device = torch.device("npu", torch.npu.current_device())
    torch.npu.set_device(device)  # the event timer records on this device's current stream
    measure(args, device, torch.npu.get_device_name(device), f"torch_npu {torch_npu.__version__}", torch_npu,
            npu_timer, make_case, attention_flops, factor)
    return 0


def measure(args, device, name: str, versions: str, fa, timer, make_case, attention_flops, factor: float,
            backend: str = "npu") -> Path:  # fmt: skip
    """Times the cases on ``device`` (``fa``, ``timer`` and ``backend`` as in :func:`run`), prints the report and
    writes ``<out>/attention_npu_<device name>.json``; returns its path."""
    shape, cases, modes, flops = _setup(args, attention_flops)
    print(f"# {name} | torch {torch.__version__} | {versions} | {shape}", flush=True)
    _, video, text = make_case(args, device, getattr(torch, args.dtype))
    rows = run(cases, flops, flops("single", 1), video, text, modes, fa, timer, reps=args.reps, factor=factor,
               backend=backend)
    summaries = report(rows, modes)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"attention_npu_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}.json"
    meta = dict(device=name, torch=torch.__version__, versions=versions, shape=shape, reps=args.reps,
                date=time.strftime("%Y-%m-%d %H:%M:%S"), claim=CLAIM)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(meta=meta, rows=rows, schedule=summaries), indent=1))
    tmp.replace(path)
    print(f"# wrote {path}")
    return path

"""GPU half of ``benchmarks/attention.py``: the Triton path timed with ``triton.testing.do_bench``.

Per (pattern, k, mode) it reports the median (and p20/p80) milliseconds with L2 flushed between runs, executed
and dense-equivalent TFLOP/s, MFU against the datasheet bf16 peak, the speedup over dense SDPA (FlashAttention or
cuDNN on the joint sequence), over the upstream path (pad + rearrange + SDPA) and the efficiency against the same
kernel run dense (k = 1), then checks the issue's two targets. ``plan`` prints all of that's inputs without a GPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import skiparse
from flop_table import print_flop_table

# Datasheet dense bf16 tensor-core peaks, TFLOP/s (no sparsity).
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0}
TARGET_EFFICIENCY = 0.90  # forward TFLOP/s at k <= 8 over the same kernel's dense TFLOP/s
TARGET_VS_UPSTREAM = 1.15  # forward speedup over the upstream path at k = 4 and 8


def datasheet_peak(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, peak in PEAK_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
        if all(part in name for part in key.split()):
            return peak
    return None


def plan(cases, flops, dense_flops, shape: str, factor: float) -> None:
    """What the GPU run measures: shapes, FLOPs, the FLOP-ideal speedups, the candidates and the targets."""
    print(f"# GPU plan: {shape}; times are do_bench medians with the L2 flushed")
    print("# candidates: skiparse (triton backend), upstream (pad + rearrange + SDPA), dense SDPA on the joint "
          "sequence, and skiparse k=1 (the same kernel dense)")
    print_flop_table(cases, flops, dense_flops, factor)
    print(f"# targets: fwd >= {TARGET_EFFICIENCY:.0%} of the same kernel's dense TFLOP/s at every k <= 8; "
          f"fwd >= {TARGET_VS_UPSTREAM}x over upstream at k = 4 and 8 (backward counted as 2.5x forward)")
    calls = 2 * (2 + 2 * len(cases))  # per mode: dense SDPA, ours at k = 1, then ours and upstream per case
    print(f"# run: {calls} do_bench calls (fwd and fwd+bwd; each ~25 ms warm-up + 100 ms of runs, at least one run) "
          "after autotuning each kernel over its 1-3 configs per shape; estimated a few minutes on one H100 (not run)")


def _closure(fn, backward: bool):
    """``fn`` itself for the forward; for forward+backward, ``fn`` then backward with fixed output gradients."""
    if not backward:
        return fn

    grads = {}

    def step():
        outs = fn()
        if not grads:
            grads.update({i: torch.randn_like(o) for i, o in enumerate(outs)})
        torch.autograd.backward(outs, [grads[i] for i in range(len(outs))])

    return step


def run(cases, flops, dense_flops, video, text, modes, peak, shape, factor_bwd, backend="triton"):
    """Times every case on the GPU; prints the table and the target verdicts and returns the JSON rows.

    ``flops(pattern, k)`` gives forward FLOPs executed; ``factor_bwd`` turns them into forward+backward FLOPs.
    ``backend`` is the skiparse backend timed (the tests run this on the CPU with a stand-in ``do_bench``)."""
    import triton.testing

    q, k_, v = video
    tq, tk, tv = text
    joint = [torch.cat([a, b], 1) if b is not None else a for a, b in ((q, tq), (k_, tk), (v, tv))]

    def ours(k, group, name=backend):
        def fn():
            with skiparse.use_backend(name):
                out, text_out = skiparse.skiparse_attention(q, k_, v, k, group, tq, tk, tv)
            return (out,) if text_out is None else (out, text_out)
        return fn

    candidates = {("sdpa", "dense", 1): (lambda: (F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in joint)),),
                                         joint)}
    leaves = [t for t in (*video, *text) if t is not None]
    candidates[("skiparse", "dense", 1)] = (ours(1, False), leaves)
    for pat, k in cases:
        candidates[("skiparse", pat, k)] = (ours(k, pat == "group"), leaves)
        candidates[("upstream", pat, k)] = (ours(k, pat == "group", "reference"), leaves)

    rows = []
    for mode in modes:
        backward = mode == "fwd+bwd"
        factor = factor_bwd if backward else 1.0
        ms = {}
        for key, (fn, inputs) in candidates.items():
            for t in inputs:
                t.requires_grad_(backward)
            with torch.set_grad_enabled(backward):
                ms[key] = triton.testing.do_bench(_closure(fn, backward), quantiles=[0.5, 0.2, 0.8],
                                                  grad_to_none=inputs if backward else None)
        own_dense = dense_flops * factor / ms[("skiparse", "dense", 1)][0] / 1e9
        for key, (median, p20, p80) in ms.items():
            kind, pat, k = key
            fl = (dense_flops if pat == "dense" else flops(pat, k)) * factor
            tflops = fl / median / 1e9
            row = dict(kind=kind, mode=mode, pattern=pat, k=k, ms=median, ms_p20=p20, ms_p80=p80, tflops=tflops,
                       dense_equivalent_tflops=dense_flops * factor / median / 1e9,
                       mfu=tflops / peak if peak else None, speedup_vs_sdpa=ms[("sdpa", "dense", 1)][0] / median,
                       ideal_speedup=dense_flops / (dense_flops if pat == "dense" else flops(pat, k)), shape=shape)
            if kind == "skiparse":
                row["efficiency_vs_own_dense"] = tflops / own_dense
                if pat != "dense":
                    row["speedup_vs_upstream"] = ms[("upstream", pat, k)][0] / median
            rows.append(row)
    _print(rows)
    return rows


def _print(rows) -> None:
    print(f"{'kind':<9}{'mode':<8}{'pattern':<8}{'k':>3}{'ms':>9}{'p20-p80':>15}{'TFLOP/s':>9}{'dense-eq':>9}"
          f"{'MFU':>6}{'ideal':>7}{'vs SDPA':>9}{'vs own k=1':>11}{'vs upstream':>12}")
    for r in rows:
        mfu = f"{r['mfu']:.0%}" if r["mfu"] is not None else "n/a"
        eff = f"{r['efficiency_vs_own_dense']:.0%}" if "efficiency_vs_own_dense" in r else ""
        up = f"{r['speedup_vs_upstream']:.2f}x" if "speedup_vs_upstream" in r else ""
        print(f"{r['kind']:<9}{r['mode']:<8}{r['pattern']:<8}{r['k']:>3}{r['ms']:>9.2f}"
              f"{r['ms_p20']:>7.2f}-{r['ms_p80']:<7.2f}{r['tflops']:>9.1f}{r['dense_equivalent_tflops']:>9.1f}"
              f"{mfu:>6}{r['ideal_speedup']:>7.2f}{r['speedup_vs_sdpa']:>8.2f}x{eff:>11}{up:>12}")
    fwd = [r for r in rows if r["kind"] == "skiparse" and r["mode"] == "fwd" and r["pattern"] != "dense"]
    eff_ok = all(r["efficiency_vs_own_dense"] >= TARGET_EFFICIENCY for r in fwd if r["k"] <= 8)
    up_ok = all(r["speedup_vs_upstream"] >= TARGET_VS_UPSTREAM for r in fwd if r["k"] in (4, 8))
    print(f"# target fwd >= {TARGET_EFFICIENCY:.0%} of own dense TFLOP/s at k <= 8: {'MET' if eff_ok else 'NOT MET'}")
    print(f"# target fwd >= {TARGET_VS_UPSTREAM}x over upstream at k = 4, 8: {'MET' if up_ok else 'NOT MET'}")

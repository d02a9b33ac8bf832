"""The NPU benchmark path (benchmarks/attention.py --device npu -> benchmarks/attention_npu.py): the plan prints on
any machine; the timing loop, the rows and the schedule verdicts against the seed's claim run on the CPU with the
fused-attention stand-in, a wall-clock timer and the CPU backend in place of the NPU's."""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fused_attention_standin as standin

ROOT = Path(__file__).resolve().parents[2]


sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark scripts import their siblings, as when run
import attention  # noqa: E402
import attention_npu  # noqa: E402


def wall_clock(fn):
    """The stand-in of the NPU's event timer: milliseconds of one call."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def test_dry_run_prints_the_paper_plan_and_the_claim_without_an_npu():
    out = subprocess.run([sys.executable, "benchmarks/attention.py", "--device", "npu", "--dry-run"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    assert "36864 tokens + 512 text, B=1 H=24 D=128 bfloat16" in out and "torch.npu.Event" in out
    ideal = {tuple(l.split()[:2]): float(l.split()[-1]) for l in out.splitlines() if l.startswith(("single", "group"))}
    assert ideal[("single", "1")] == 1.0 and ideal[("single", "2")] == 1.95 and ideal[("group", "4")] == 3.69
    assert ideal[("group", "8")] == 6.66
    # the spec's schedule figure: attention FLOPs 0.393 of dense, a 2.55x reduction
    assert "32 layers (k=1 x4, k=2 x8, k=4 x12, k=8 x8" in out and "speedup 2.55x" in out
    assert '"over 45%"' in out and "121x576x1024" in out and ">= 1.45x" in out and ">= 1.82x" in out


def test_schedule_layers_are_the_released_models():
    layers = attention_npu.schedule_layers()
    assert sum(n for _, _, n in layers) == 32
    per_k = {}
    for pattern, k, n in layers:
        per_k.setdefault(k, {})[pattern] = n
    assert per_k == {1: {"single": 4}, 2: {"single": 4, "group": 4}, 4: {"single": 6, "group": 6},
                     8: {"single": 4, "group": 4}}


def _rows(dense_ms, ours_ms):
    rows = [dict(kind="dense", mode="fwd", pattern="dense", k=1, ms=dense_ms)]
    return rows + [dict(kind="skiparse", mode="fwd", pattern=p, k=k, ms=ours_ms[k]) for p, k, _ in
                   attention_npu.schedule_layers()]


@pytest.mark.parametrize("ours,throughput,time_saved", [
    ({1: 10.0, 2: 8.0, 4: 6.0, 8: 5.0}, True, False),   # 320 / 216 ms = 1.48x
    ({1: 10.0, 2: 5.0, 4: 3.0, 8: 2.0}, True, True),    # 320 / 132 ms = 2.42x
    ({1: 10.0, 2: 9.0, 4: 8.0, 8: 7.0}, False, False),  # 320 / 264 ms = 1.21x
])  # fmt: skip
def test_schedule_summary_weighs_each_layer_and_reads_the_claim_both_ways(ours, throughput, time_saved):
    """Dense 10 ms a layer; skiparse per k: the schedule's 32 layers weigh k=1 x4, k=2 x8, k=4 x12, k=8 x8."""
    s = attention_npu.schedule_summary(_rows(10.0, ours), "fwd")
    expected_ours = 4 * ours[1] + 8 * ours[2] + 12 * ours[4] + 8 * ours[8]
    assert s["dense_ms"] == 320.0 and s["skiparse_ms"] == pytest.approx(expected_ours)
    assert s["speedup"] == pytest.approx(320.0 / expected_ours)
    assert s["time_saved"] == pytest.approx(1 - expected_ours / 320.0)
    assert (s["claim_met_as_throughput"], s["claim_met_as_time"]) == (throughput, time_saved)


def test_schedule_summary_needs_every_layer_type():
    rows = [r for r in _rows(10.0, {1: 10.0, 2: 5.0, 4: 3.0, 8: 2.0}) if r["k"] != 8]
    assert attention_npu.schedule_summary(rows, "fwd") is None


def test_tiny_run_and_report_on_the_cpu_with_stand_ins(capsys):
    L, T, B, H, D = 2 * 4 * 4, 8, 1, 2, 16

    def flops(pattern, k):
        return attention.attention_flops(L, T, k, pattern == "group", B, H, D)

    g = torch.Generator().manual_seed(0)
    video = [torch.randn(B, L, H, D, generator=g) for _ in range(3)]
    text = [torch.randn(B, T, H, D, generator=g) for _ in range(3)]
    cases = [("single", 1), *((p, k) for p in ("single", "group") for k in (2, 4, 8))]
    calls = []

    def timer(fn):
        calls.append(fn)
        return wall_clock(fn)

    rows = attention_npu.run(cases, flops, flops("single", 1), video, text, ["fwd", "fwd+bwd"], standin, timer,
                             reps=2, factor=attention.FWD_BWD_FLOP_FACTOR, backend="cpu")  # fmt: skip
    assert len(calls) == 2 * 2 * (len(cases) + 1)  # reps x modes x (cases + dense)
    keys = {(r["kind"], r["mode"], r["pattern"], r["k"]) for r in rows}
    assert keys == {("dense", m, "dense", 1) for m in ("fwd", "fwd+bwd")} | {
        ("skiparse", m, p, k) for m in ("fwd", "fwd+bwd") for p, k in cases}
    for r in rows:
        assert r["ms"] > 0 and r["tflops"] > 0 and r["ideal_speedup"] >= 1
    assert all(t.grad is None for t in (*video, *text))  # the backward runs clear their gradients
    summaries = attention_npu.report(rows, ["fwd", "fwd+bwd"])
    out = capsys.readouterr().out
    assert [s["mode"] for s in summaries] == ["fwd", "fwd+bwd"]
    assert out.count("SUV schedule attention") == 2 and out.count("seed's claim") == 2
    assert "as throughput (>= 1.45x)" in out and "as time saved (>= 1.82x)" in out


def test_measure_writes_the_rows_and_the_schedule(tmp_path, capsys):
    """The timed run as ``--device npu`` makes it, on the CPU: stand-in fused attention, wall clock, CPU backend."""
    args = argparse.Namespace(latent=(2, 4, 4), text=8, heads=2, head_dim=16, batch=1, ks=[1, 2, 4, 8],
                              patterns="single,group", modes="fwd", dtype="float32", reps=1, out=tmp_path)
    path = attention_npu.measure(args, torch.device("cpu"), "Stand-in NPU 910B", "stand-in", standin, wall_clock,
                                 attention.make_case, attention.attention_flops, attention.FWD_BWD_FLOP_FACTOR,
                                 backend="cpu")  # fmt: skip
    assert path == tmp_path / "attention_npu_stand_in_npu_910b.json"
    data = json.loads(path.read_text())
    assert data["meta"]["shape"] == "video 2x4x4 = 32 tokens + 8 text, B=1 H=2 D=16 float32"
    assert len(data["rows"]) == 8 and [s["mode"] for s in data["schedule"]] == ["fwd"]
    s = data["schedule"][0]
    assert s["speedup"] == pytest.approx(s["dense_ms"] / s["skiparse_ms"])
    assert "seed's claim" in capsys.readouterr().out

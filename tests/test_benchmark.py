"""The benchmark harness runs end to end on a tiny shape and writes its JSON and plot; the dry run prints the plan."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_prints_the_paper_plan():
    out = subprocess.run([sys.executable, "benchmarks/attention.py", "--dry-run"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "36864 tokens + 512 text" in out
    ideal = {tuple(l.split()[:2]): float(l.split()[-1]) for l in out.splitlines() if l.startswith(("single", "group"))}
    # the spec's FLOP-ideal speedups at the paper shape (text included)
    assert ideal[("single", "2")] == 1.95 and ideal[("group", "4")] == 3.69 and ideal[("single", "8")] == 6.66


def test_tiny_run_writes_results(tmp_path):
    cmd = [sys.executable, "benchmarks/attention.py", "--latent", "2x6x8", "--text", "8", "--heads", "2",
           "--head-dim", "16", "--ks", "1,2,4", "--reps", "1", "--dtype", "fp32", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert "vs upstream" in out and "threads" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("# CPU kernels") and "peak float32" in out  # --dtype fp32 below
    data = json.loads((tmp_path / "attention_cpu_float32.json").read_text())
    rows = [r for r in data["rows"] if r["kind"] == "skiparse"]
    assert {(r["pattern"], r["k"], r["mode"]) for r in rows} == {
        (p, k, m) for p in ("single", "group") for k in (1, 2, 4) for m in ("fwd", "fwd+bwd") if not (p == "group" and k == 1)
    }
    for r in rows:
        assert r["ms"] > 0 and r["ideal_speedup"] >= 1 and r["speedup_vs_upstream"] > 0
    assert (tmp_path / "attention_cpu_float32.png").stat().st_size > 10_000
    for r in data["rows"]:  # TFLOP/s and share of the estimated peak, which the header states
        assert r["of_peak"] is None or 0 < r["of_peak"] < 1
    assert "FLOP/cycle" in data["meta"]["peak_estimate"]


def test_default_dtype_follows_the_cpu():
    """bf16 where the CPU has AMX or AVX512-BF16, else fp32; the header names the CPU kernels' ISA and AMX use."""
    out = subprocess.run([sys.executable, "benchmarks/attention.py", "--dry-run"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    with open("/proc/cpuinfo") as f:
        native = bool({"amx_bf16", "avx512_bf16"} & set(f.read().split()))
    assert ("bfloat16 |" in out) == native and ("float32 |" in out) == (not native)
    assert "AMX: bf16 " in out and " build " in out


def test_sweep_writes_a_log_log_plot(tmp_path):
    cmd = [sys.executable, "benchmarks/attention.py", "--sweep", "--text", "8", "--heads", "1", "--head-dim", "8",
           "--reps", "1", "--modes", "fwd", "--dtype", "bf16", "--out", str(tmp_path), "--sweep-frames", "9,17"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    data = json.loads((tmp_path / "attention_sweep_bfloat16.json").read_text())
    assert {(r["frames"], r["kind"]) for r in data["rows"]} == {
        (f, kind) for f in (9, 17) for kind in ("dense", "upstream", "skiparse")}
    assert {r["tokens"] for r in data["rows"]} == {2 * 36 * 64 + 8, 3 * 36 * 64 + 8}
    assert all(r["s"] > 0 for r in data["rows"]) and "skiparse" in out
    assert (tmp_path / "attention_sweep_bfloat16.png").stat().st_size > 10_000


def test_gpu_dry_run_prints_the_plan_without_a_gpu():
    out = subprocess.run([sys.executable, "benchmarks/attention.py", "--device", "cuda", "--dry-run"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    assert "B=1 H=24 D=128 bfloat16" in out and "L2 flushed" in out
    ideal = {tuple(l.split()[:2]): float(l.split()[-1]) for l in out.splitlines() if l.startswith(("single", "group"))}
    assert ideal[("single", "2")] == 1.95 and ideal[("group", "4")] == 3.69 and ideal[("group", "8")] == 6.66
    assert "fwd >= 90% of the same kernel's dense TFLOP/s" in out and "1.15x over upstream at k = 4 and 8" in out
    quick = subprocess.run([sys.executable, "benchmarks/attention.py", "--device", "cuda", "--dry-run", "--quick"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout
    cases = {tuple(l.split()[:2]) for l in quick.splitlines() if l.startswith(("single", "group"))}
    assert cases == {("single", "1"), ("single", "4"), ("single", "8"), ("group", "4"), ("group", "8")}


def test_gpu_report_logic_on_the_cpu(monkeypatch, capsys):
    """The GPU path's timing loop, rows and target verdicts, with the CPU backend and a stand-in for do_bench."""
    import time

    import pytest
    import torch

    triton_testing = pytest.importorskip("triton.testing")

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import attention
    import attention_gpu

    def fake_do_bench(fn, quantiles, grad_to_none=None):
        start = time.perf_counter()
        fn()
        ms = (time.perf_counter() - start) * 1e3
        return [ms, ms * 0.9, ms * 1.1]

    monkeypatch.setattr(triton_testing, "do_bench", fake_do_bench)
    L, T, B, H, D = 96, 8, 1, 2, 16
    video = [torch.randn(B, L, H, D) for _ in range(3)]
    text = [torch.randn(B, T, H, D) for _ in range(3)]
    flops = lambda pat, k: attention.attention_flops(L, T, k, pat == "group", B, H, D)  # noqa: E731
    cases = [("single", 2), ("group", 4)]
    rows = attention_gpu.run(cases, flops, flops("single", 1), video, text, ["fwd", "fwd+bwd"], 989.0, "tiny",
                             attention.FWD_BWD_FLOP_FACTOR, backend="cpu")
    out = capsys.readouterr().out
    assert {(r["kind"], r["pattern"], r["k"], r["mode"]) for r in rows} >= {
        ("skiparse", "group", 4, "fwd+bwd"), ("upstream", "single", 2, "fwd"), ("sdpa", "dense", 1, "fwd")}
    mine = [r for r in rows if r["kind"] == "skiparse" and r["pattern"] != "dense"]
    assert all(r["speedup_vs_upstream"] > 0 and 0 < r["mfu"] and r["efficiency_vs_own_dense"] > 0 for r in mine)
    assert out.count("MET") == 2


def test_conv_benchmark_times_the_models_conv_shapes():
    out = subprocess.run([sys.executable, "benchmarks/conv3d_3x3.py", "--frames", "9", "--size", "16", "--repeats",
                          "1"], cwd=ROOT, check=True, capture_output=True, text=True).stdout  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("encode ", "decode "))]
    # The decoder's first conv: the 32-channel latent (2 frames + 2 causal padding frames, 2x2) into 640 channels.
    assert any(r[0] == "decode" and "".join(r[1:6]) == "(1,32,4,2,2)" and "".join(r[6:11]) == "(640,32,3,3,3)"
               for r in rows)  # fmt: skip
    totals = [r for r in rows if r[1] == "total"]
    assert [r[0] for r in totals] == ["encode", "decode"] and all(float(r[-1]) > 0 for r in totals)


def test_wfvae_accuracy_benchmark_compares_both_conv_paths_with_float64():
    out = subprocess.run([sys.executable, "benchmarks/wfvae_accuracy.py", "--preset", "tiny", "--frames", "9",
                          "--height", "64", "--width", "64"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| `")]
    assert [r[0].strip().split()[0] for r in rows] == ["`F.conv3d`", "`skiparse.conv3d_3x3`"]
    for row in rows:  # fp32 against fp64: a small error, far above an 8-bit video's own rounding (~59 dB)
        assert 0 < float(row[1]) < 1e-3 and float(row[3].split()[0]) > 90

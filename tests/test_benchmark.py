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
           "--head-dim", "16", "--ks", "1,2,4", "--reps", "1", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert "vs upstream" in out and "threads" in out.splitlines()[0]
    data = json.loads((tmp_path / "attention_cpu.json").read_text())
    rows = [r for r in data["rows"] if r["kind"] == "skiparse"]
    assert {(r["pattern"], r["k"], r["mode"]) for r in rows} == {
        (p, k, m) for p in ("single", "group") for k in (1, 2, 4) for m in ("fwd", "fwd+bwd") if not (p == "group" and k == 1)
    }
    for r in rows:
        assert r["ms"] > 0 and r["ideal_speedup"] >= 1 and r["speedup_vs_upstream"] > 0
    assert (tmp_path / "attention_cpu.png").stat().st_size > 10_000

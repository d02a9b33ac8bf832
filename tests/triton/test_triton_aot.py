"""``python -m skiparse.triton.aot``: real compilations for sm_80 / sm_90 (no GPU needed), and its verdicts."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from skiparse.triton import aot  # noqa: E402


def run_aot(*args, code=None):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the interpreter compiles nothing
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "skiparse.triton.aot", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_ptxas_report_is_parsed():
    log = (
        "ptxas info    : Function properties for attention_fwd_kernel\n"
        "    48 bytes stack frame, 24 bytes spill stores, 20 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers\n"
    )
    assert aot._ptxas_numbers(log) == {"registers": 255, "spill_bytes": 44, "local_bytes": 48}


def test_one_kernel_compiles_for_both_targets_and_reports_resources():
    r = run_aot("--filter", "row_delta d64")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("row_delta d64")]
    assert {line.split()[2] for line in rows} == {"sm_80", "sm_90"}
    assert "2 compilations, 0 failing" in r.stdout


def test_a_spilling_config_fails_the_run():
    code = (
        "import sys\n"
        "from skiparse.triton import aot, attention_fwd, configs\n"
        "spec = attention_fwd.aot_specs()[2]  # d128, video queries\n"
        "assert spec.name == 'attention_fwd d128 video-q', spec.name\n"
        "big = spec._replace(configs={80: [configs.cfg(4, 3, BLOCK_M=128, BLOCK_N=128)]})\n"
        "aot.all_specs = lambda: [big]\n"
        "sys.exit(aot.main(['--arch', '80', '--jobs', '1']))\n"
    )
    r = run_aot(code=code)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL: spills registers" in r.stdout


def test_refuses_to_run_under_the_interpreter():
    r = subprocess.run([sys.executable, "-m", "skiparse.triton.aot"], capture_output=True, text=True,
                       env={**os.environ, "TRITON_INTERPRET": "1"})
    assert r.returncode == 2 and "TRITON_INTERPRET is set" in r.stderr

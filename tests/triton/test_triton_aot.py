"""``python -m skiparse.triton.aot``: real compilations for sm_80 / sm_90 (no GPU needed), and its verdicts."""
import json
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


def test_dump_writes_cubins_and_their_index(tmp_path):
    r = run_aot("--filter", "row_delta d64", "--dump", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert {e["arch"] for e in index} == {80, 90} and len(index) == 2
    for e in index:
        assert e["kernel"] == "row_delta d64" and e["head_dim"] == 64 and e["dtype"] == "bf16"
        assert {"group", "masks", "text_queries", "BLOCK_N", "num_stages"} <= set(e)
        assert e["BLOCK_M"] == 64 and e["num_warps"] == 8 and e["spill_bytes"] == 0 and e["registers"] > 0
        assert (tmp_path / e["cubin"]).read_bytes()[:4] == b"\x7fELF"


def test_dump_describes_attention_kernels():
    from skiparse.triton import configs

    spec = configs.KernelSpec("attention_fwd d128 text-q", None, {"Q": "*bf16", "L": "i32"},
                              configs.attention_aot_flags(128, TEXT_QUERIES=True), {})
    fields = aot._index_fields(spec, 90, configs.cfg(8, 3, BLOCK_M=128, BLOCK_N=64))
    assert fields["head_dim"] == 128 and fields["group"] is True and fields["text_queries"] is True
    assert fields["masks"] == ["text", "video"] and (fields["BLOCK_M"], fields["BLOCK_N"]) == (128, 64)
    assert fields["cubin"] == "attention_fwd_d128_text_q_sm90_BLOCK_M_128_BLOCK_N_64_w8_s3.cubin"


SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
        /*0020*/              @!P0 BRA `(.L_x_0) ;
        /*0030*/                   FFMA R2, R3, R4, R5 ;
.L_x_0:
        /*0040*/              @P1 BRA `(.L_x_1) ;
        /*0050*/                   BRA `(.L_x_2) ;
.L_x_3:
        /*0060*/                   FADD R2, R3, R4 ;
        /*0070*/              @P2 BRA `(.L_x_3) ;
.L_x_2:
        /*0080*/                   EXIT ;
"""


def test_sass_loops_are_found_by_their_backward_branch():
    from skiparse.triton import sass_loops

    assert sass_loops.loops(SASS) == [sass_loops.Loop(1, 4, 1), sass_loops.Loop(6, 2, 0)]
    assert sass_loops.main_loop(SASS) == sass_loops.Loop(1, 4, 1)


@pytest.mark.parametrize("kernel", ["fwd", "dkdv", "dq"])
def test_loop_report_compares_with_the_dense_kernel(kernel):
    code = (
        "from skiparse.triton import aot\n"
        f"rows = [aot.loop_one(({kernel!r}, n, 80, 64, 0)) for n in ('dense', 'single')]\n"
        "print(rows)\n"
        "assert all(r['instructions'] > 50 and r['mma'] > 0 and r['spill_bytes'] == 0 for r in rows), rows\n"
        "rows += [dict(rows[1], variant=v) for v in ('group', 'single+masks', 'group+masks')]\n"
        "table, ok = aot.loop_report(rows)\n"
        "print(table)\n"
        f"assert table.splitlines()[1].startswith({kernel!r}), table\n"
        "assert 'sm_80   64 BLOCK_M=' in table and list(ok) == [" + repr(kernel) + "]\n"
    )
    r = run_aot(code=code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_loop_verdict_covers_forward_and_backward():
    assert aot.loop_verdict({"fwd": True, "dkdv": True, "dq": True}) == "loop targets: forward MET, backward MET"
    assert aot.loop_verdict({"fwd": True, "dkdv": True, "dq": False}) == "loop targets: forward MET, backward NOT MET"
    assert aot.loop_verdict({"fwd": False, "dkdv": True}) == "loop targets: forward NOT MET, backward MET"


def test_loop_report_flags_rows_over_target():
    rows = [dict(kernel="dq", variant=v, arch=90, head_dim=128, config="c", instructions=n, error="")
            for v, n in (("dense", 100), ("single", 115), ("group", 116), ("single+masks", 100), ("group+masks", 90))]
    table, ok = aot.loop_report(rows)
    assert ok == {"dq": False}
    assert "115  1.15x " in table and "116  1.16x (!)" in table

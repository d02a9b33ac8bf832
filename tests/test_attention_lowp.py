"""bf16/fp16 CPU attention (GEMMs in the input dtype on AMX where present, the fp32 path elsewhere) under the
FlashAttention error rule, forward and every gradient. Run it natively and capped (the path in use is whatever
this process's ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA allow); test_every_isa_path runs a subset on each path."""
import os
import subprocess
import sys

import pytest
import torch

import skiparse

from skiparse_testing import assert_fa_rule, cast, make_inputs, requires_cpu_ext, run, tensor_inputs

pytestmark = requires_cpu_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def grads_for(base, seed=1):
    g = torch.Generator().manual_seed(seed)
    q, tq = base["q"], base.get("text_q")
    return [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (q, tq) if t is not None]


def check_fa_rule(base, k, group, dtype):
    """Our output and gradients in `dtype` vs fp64, bounded by the reference backend's error in `dtype`."""
    grads = grads_for(base)
    ref_out, ref_text, ref_g = run("reference", cast(base, torch.float64), k, group, grads)
    pt_out, pt_text, pt_g = run("reference", cast(base, dtype), k, group, grads)
    out, text_out, g = run("cpu", cast(base, dtype), k, group, grads)
    assert out.dtype == dtype
    assert_fa_rule("out", out, pt_out, ref_out, dtype)
    if ref_text is not None:
        assert_fa_rule("text_out", text_out, pt_text, ref_text, dtype)
    for name in tensor_inputs(base):
        assert g[name].dtype == dtype
        assert_fa_rule(f"d{name}", g[name], pt_g[name], ref_g[name], dtype)


@pytest.mark.numerics
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k,group", [(1, False), (2, False), (2, True), (3, True), (4, False), (4, True), (8, False)])
@pytest.mark.parametrize("masks", [False, True])
def test_fa_rule(dtype, k, group, masks):
    check_fa_rule(make_inputs(2, 300, 2, 32, 9, masks=masks), k, group, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("H", [1, 2])
def test_fa_rule_key_groups(dtype, H):
    """A sub-sequence of more keys than one key group of the native backward (4096 rows): dK, dV of each group and
    dQ^T accumulated across groups; H = 1 also splits the query tiles over tasks (their dK, dV summed after)."""
    check_fa_rule(make_inputs(1, 4700, H, 16, 40, masks=True), 1, False, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("L,D,T,k,group", [
    (1300, 64, 37, 2, False),  # several query and key tiles per lane, D above one 64-column pack block
    (1111, 128, 0, 4, True),   # no text; odd tile lengths (the GEMMs' inner dims are padded to even)
    (97, 24, 5, 3, False),     # D not a multiple of 16
    (700, 48, 20, 2, True),    # D = 48: the packed K^T in a 32-column block (vectorised) and a 16-column rest
    (90, 7, 3, 2, True),       # odd D: the fp32 path
])
def test_fa_rule_shapes(dtype, L, D, T, k, group):
    check_fa_rule(make_inputs(1, L, 2, D, T, masks=True), k, group, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k,group", [(1, False), (2, True), (4, False)])
def test_fully_masked_rows_are_zero(dtype, k, group):
    base = make_inputs(2, 37, 2, 16, 4, dtype=dtype)
    base["video_mask"] = torch.zeros(2, 37, dtype=torch.bool)
    base["text_mask"] = torch.zeros(2, 4, dtype=torch.bool)
    base["text_mask"][1, 0] = True
    out, text_out, g = run("cpu", base, k, group, grads_for(base))
    assert torch.all(out[0] == 0) and torch.all(text_out[0] == 0)
    for name, grad in g.items():
        assert torch.isfinite(grad).all() and torch.all(grad[0] == 0), name
    torch.testing.assert_close(out[1], base["text_v"][1, 0].detach().expand(37, 2, 16), atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [0.5, 0.0, -0.2])
@pytest.mark.parametrize("k,group", [(1, False), (4, True)])
def test_any_scale_keeps_masked_keys_out(dtype, scale, k, group):
    """The native path folds the scale into its exp pass for scale > 0 and scales the scores first otherwise (a
    masked key at -inf times 0 would be NaN): every scale gives the reference's output, masks included."""
    base = make_inputs(2, 300, 2, 32, 9, masks=True)

    def forward(backend, dt):
        with skiparse.use_backend(backend):
            return skiparse.skiparse_attention(**cast(base, dt), sparsity=k, group=group, scale=scale)

    ours, same_dtype, exact = forward("cpu", dtype), forward("reference", dtype), forward("reference", torch.float64)
    for name, a, b, c in zip(("out", "text_out"), ours, same_dtype, exact):
        assert_fa_rule(name, a, b, c, dtype)


def in_subprocess(code, env):
    """Runs `code` in a fresh interpreter under `env` (ISA caps are read once at load), returns its stdout."""
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])}
    res = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


CAPS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512-no-amx": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}
# ATen capped, oneDNN not: torch's packing refuses below AVX-512 although oneDNN could use AMX, so our kernels must
# take the fp32 path. (torch 2.13's own bf16 SDPA fails there, "pack_vnni2 is only supported when avx512 is
# supported", so the error-rule runs, whose yardstick is that SDPA, cap oneDNN too.)
DISPATCH_CAPS = {**CAPS, "aten-default-only": {"ATEN_CPU_CAPABILITY": "default"}}


@pytest.mark.parametrize("cap", list(DISPATCH_CAPS))
def test_dispatcher_follows_the_caps(cap):
    """ATEN_CPU_CAPABILITY picks the kernels' ISA build as it picks ATen's; ONEDNN_MAX_CPU_ISA below AMX turns
    the native bf16/fp16 GEMMs off (the fp32 path takes over)."""
    out = in_subprocess(
        "import torch, skiparse, skiparse._C as C; "
        "print(C.kernel_isa(), torch.backends.cpu.get_cpu_capability(), C.native_lowp(False), C.native_lowp(True))",
        DISPATCH_CAPS[cap]).split()
    isa, aten, bf16, fp16 = out
    assert isa == ("AVX512" if aten == "AVX512" else "AVX2")
    if cap == "avx2":
        assert isa == "AVX2"
    assert bf16 == "False" and fp16 == "False"


def test_native_isa_matches_aten():
    import skiparse._C as C

    aten = torch.backends.cpu.get_cpu_capability()
    assert C.kernel_isa() == ("AVX512" if aten == "AVX512" else "AVX2")


@pytest.mark.parametrize("cap", list(CAPS))
def test_every_isa_path(cap):
    """A subset of the bf16/fp16 error-rule checks on each capped path, so one pytest run covers them all."""
    in_subprocess(
        "import torch, test_attention_lowp as t\n"
        "from skiparse_testing import make_inputs\n"
        "for dt in (torch.bfloat16, torch.float16):\n"
        "    for k, g in ((2, True), (4, False)):\n"
        "        t.check_fa_rule(make_inputs(1, 600, 2, 32, 9, masks=True), k, g, dt)\n",
        CAPS[cap])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_softmax_statistics_keep_fp32_accuracy(dtype):
    """The logsumexp that the forward saves comes from fp32 statistics whatever the GEMM dtype: against fp64 on the
    same (rounded) inputs it is off by fp32 rounding, not by the input dtype's (an exp or a row sum of bf16
    precision, 4e-3, would show here; the output's own rounding hides it from the FlashAttention rule)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 700, 2, 64, generator=g).to(dtype) * 2 for _ in range(3))
    scale = 64 ** -0.5
    _, _, lse, _, _ = torch.ops.skiparse.attention(q, k, v, None, None, None, None, None, 1, False, scale)
    s = torch.einsum("blhd,bmhd->bhlm", q.double(), k.double()) * scale
    ref = torch.logsumexp(s, dim=-1)  # (B, H, L)
    err = (lse.double() - ref).abs().max().item()
    assert err < 2e-5, err

"""Every shipped GPU configuration (``CONFIGS`` of the forward, dK/dV and dQ kernels, sm_80 and sm_90, head dims 64
and 128) runs under the interpreter at its real tile sizes: fp32 against the fp64 reference and bf16 under the
FlashAttention error rule, forward and every gradient.

Per (arch, head dim) the i-th configuration of each kernel runs together in one case, so every configuration is
run at least once. The interpreter executes a program's tile as one block, so warps and stages do not change its
result; cases whose three tiles are equal are run once. Each shape spans a full and a partial tile of the largest
block (more tiles of the smaller ones) in the video segment, a partial text tile, padding and both masks.
Marked ``configs`` (``pytest -m configs``).
"""
import pytest
import torch

from skiparse_testing import assert_fa_rule, cast, make_inputs

pytest.importorskip("triton")
import triton  # noqa: E402

from skiparse.triton import attention_bwd, attention_fwd, configs  # noqa: E402
from test_triton_attention import attention, outputs_and_grads, reference_attention  # noqa: E402

pytestmark = [pytest.mark.configs,
              pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests: CPU tensors only")]

# (autotuner dict in its module, its kernel, the segment switch in its autotune key, tuned configs)
KERNELS = {
    "fwd": (attention_fwd.attention_fwd, attention_fwd.with_gather(attention_fwd.attention_fwd_kernel), "TEXT_QUERIES",
            attention_fwd.CONFIGS),
    "dkdv": (attention_bwd.attention_bwd_dkdv, attention_bwd.dkdv_gather(attention_bwd.attention_bwd_dkdv_kernel),
             "TEXT_KEYS", attention_bwd.DKDV_CONFIGS),
    "dq": (attention_bwd.attention_bwd_dq, attention_bwd.dq_gather(attention_bwd.attention_bwd_dq_kernel),
           "TEXT_QUERIES", attention_bwd.DQ_CONFIGS),
}


def shipped_cases() -> dict[tuple, list[str]]:
    """(head dim, {kernel: config}) -> the names of the shipped configurations it runs."""
    cases: dict[tuple, list[str]] = {}
    for arch in configs.ARCHS:
        for d in configs.AOT_HEAD_DIMS:
            tuned = {name: k[3][arch][d] for name, k in KERNELS.items()}
            for i in range(max(map(len, tuned.values()))):
                picked = {name: cs[i % len(cs)] for name, cs in tuned.items()}
                tiles = tuple((name, tuple(sorted(c.kwargs.items()))) for name, c in picked.items())
                cases.setdefault((d, tiles), []).append(
                    f"sm{arch}-d{d}-" + "-".join(f"{n}{configs_id(c)}" for n, c in picked.items()))
    return cases


def configs_id(c: triton.Config) -> str:
    return "x".join(str(v) for v in c.kwargs.values()) + f"w{c.num_warps}s{c.num_stages}"


CASES = shipped_cases()


@pytest.fixture
def pinned(monkeypatch):
    """Make the launchers run one given configuration per kernel for head-dim class ``d``."""
    def pin(d: int, tiles: tuple) -> None:
        for name, items in tiles:
            tuned, fn, switch, _ = KERNELS[name]
            config = triton.Config(dict(items), num_warps=4, num_stages=1)
            monkeypatch.setitem(tuned, d, triton.autotune([config], key=["SUB", "T", switch])(fn))
    return pin


@pytest.mark.parametrize("i,d,tiles", [(i, *case) for i, case in enumerate(CASES)],
                         ids=[names[0] for names in CASES.values()])
def test_shipped_configuration(triton_kernels, pinned, i, d, tiles):
    pinned(d, tiles)
    block = max(v for _, items in tiles for _, v in items)
    k, group = 2, i % 2 == 1
    sub = block + block // 2 + 3  # a full tile and a partial one at the largest block, more at the smaller ones
    L, T = 2 * sub - 1, block // 2 + 5  # L odd: the last position of sub-sequence 1 is padding
    base = make_inputs(1, L, 1, d, T, masks=True)

    ref_outs, ref_grads = outputs_and_grads(reference_attention, cast(base, torch.float64), k, group)
    outs, grads = outputs_and_grads(attention, base, k, group)
    for o, r in zip(outs, ref_outs):
        torch.testing.assert_close(o.double(), r, atol=2e-5, rtol=1e-4)
    for name, g in grads.items():
        torch.testing.assert_close(g.double(), ref_grads[name], atol=5e-5, rtol=1e-4, msg=lambda m: f"d{name}: {m}")

    bf16 = cast(base, torch.bfloat16)
    pt_outs, pt_grads = outputs_and_grads(reference_attention, bf16, k, group)
    outs, grads = outputs_and_grads(attention, cast(base, torch.bfloat16), k, group)
    for name, o, p, r in zip(("out", "text_out"), outs, pt_outs, ref_outs):
        assert_fa_rule(name, o, p, r, torch.bfloat16)
    for name, g in grads.items():
        assert_fa_rule(f"d{name}", g, pt_grads[name], ref_grads[name], torch.bfloat16)

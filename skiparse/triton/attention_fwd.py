"""Fused Skiparse attention forward: flash attention over each sub-sequence, reorder folded into the addressing.

Grid ``(query tiles, H, B * k)``, launched once for the video queries and once for the text queries
(``TEXT_QUERIES``, a compile-time switch, so that neither variant carries the other's registers). A video query
tile of sub-sequence ``s`` attends to the keys of the same sub-sequence and then to the text keys (a second key
segment); a text query tile is copy ``s`` of the text queries and attends to the same keys. Online softmax in
base 2 with fp32 statistics; rows whose keys are all masked give output 0 and ``lse = +inf``. Video outputs go
straight to their natural rows; the text copies are written to ``text_parts`` (B, k, T, H, D) fp32 and averaged by
the launcher, as the reference does.
"""
import triton
import triton.language as tl

from . import configs
from .attention_common import LN2, load_keys, load_rows, program_coords, store_rows, text_rows, video_rows


@triton.jit
def _softmax_step(acc, m_i, l_i, q, k, v, kvalid, qk_scale, PRECISION: tl.constexpr):
    """One key tile of the online softmax; scores in log2 units, ``-inf`` maxima kept finite for exp2."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    s = tl.where(kvalid[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(s - m_safe[:, None])
    alpha = tl.math.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, m_new, l_i


@triton.jit
def attention_fwd_kernel(
    Q, K, V, TQ, TK, TV, TMASK, VMASK,  # inputs; TMASK (B, T), VMASK (B, L) uint8
    O, LSE, TPARTS, TLSE,  # outputs: (B, L, H, D), (B, H, L), (B, k, T, H, D), (B, H, k, T), all contiguous
    qk_scale,  # softmax scale * log2(e)
    L, T, SUB, sparsity, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    stq_b, stq_l, stq_h, stk_b, stk_l, stk_h, stv_b, stv_l, stv_h,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    HAS_TMASK: tl.constexpr, HAS_VMASK: tl.constexpr, PRECISION: tl.constexpr, TEXT_QUERIES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    tile, h, b, s = program_coords(sparsity)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    if TEXT_QUERIES:
        q_rows, q_valid = text_rows(tile * BLOCK_M, offs_m, T)
        q = load_rows(TQ + b * stq_b + h * stq_h, q_rows, stq_l, q_valid, offs_d, HEAD_DIM)
    else:
        q_rows, q_valid = video_rows(tile * BLOCK_M, offs_m, s, SUB, L, sparsity, GROUP)
        q = load_rows(Q + b * sq_b + h * sq_h, q_rows, sq_l, q_valid, offs_d, HEAD_DIM)

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)

    k_base, v_base = K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h
    for start in range(0, SUB, BLOCK_N):
        rows, real = video_rows(start, offs_n, s, SUB, L, sparsity, GROUP)
        valid, k, v = load_keys(k_base, v_base, sk_l, sv_l, rows, real, VMASK + b * L, offs_d, HEAD_DIM, HAS_VMASK)
        acc, m_i, l_i = _softmax_step(acc, m_i, l_i, q, k, v, valid, qk_scale, PRECISION)

    k_base, v_base = TK + b * stk_b + h * stk_h, TV + b * stv_b + h * stv_h
    for start in range(0, T, BLOCK_N):
        rows, real = text_rows(start, offs_n, T)
        valid, k, v = load_keys(k_base, v_base, stk_l, stv_l, rows, real, TMASK + b * T, offs_d, HEAD_DIM, HAS_TMASK)
        acc, m_i, l_i = _softmax_step(acc, m_i, l_i, q, k, v, valid, qk_scale, PRECISION)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(l_i > 0.0, (m_i + tl.math.log2(l_safe)) * LN2, float("inf"))
    if TEXT_QUERIES:
        parts = TPARTS + ((b * sparsity + s) * T * H + h) * HEAD_DIM
        store_rows(parts, q_rows, H * HEAD_DIM, q_valid, offs_d, out, HEAD_DIM)
        tl.store(TLSE + ((b * H + h) * sparsity + s) * T + q_rows, lse, mask=q_valid)
    else:
        store_rows(O + (b * L * H + h) * HEAD_DIM, q_rows, H * HEAD_DIM, q_valid, offs_d, out, HEAD_DIM)
        tl.store(LSE + (b * H + h) * L + q_rows, lse, mask=q_valid)


# arch -> head-dim class -> configs; the ones whose AOT resource report shows no spills (see aot.py).
CONFIGS = {
    80: {64: [configs.cfg(8, 3, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32),
              configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)],
         128: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64),
               configs.cfg(4, 3, BLOCK_M=64, BLOCK_N=32)]},
    90: {64: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=128), configs.cfg(8, 3, BLOCK_M=128, BLOCK_N=64),
              configs.cfg(4, 2, BLOCK_M=64, BLOCK_N=64)],
         128: [configs.cfg(8, 3, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32),
               configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)]},
}
INTERPRETER = configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=16)
_KEY = ["SUB", "T", "HEAD_DIM", "GROUP", "TEXT_QUERIES"]

# One autotuner per head-dim class, so that each only tries the configs tuned for it.
attention_fwd = {
    d: triton.autotune(configs.pick(CONFIGS, INTERPRETER, d), key=_KEY)(attention_fwd_kernel)
    for d in configs.AOT_HEAD_DIMS
}


def aot_specs() -> list[configs.KernelSpec]:
    sig = configs.signature(attention_fwd_kernel, "bf16", data=("Q", "K", "V", "TQ", "TK", "TV", "O"),
                            fp32=("LSE", "TPARTS", "TLSE"), u8=("TMASK", "VMASK"), floats=("qk_scale",))
    return [
        configs.KernelSpec(f"attention_fwd d{d} {'text' if text else 'video'}-q", attention_fwd_kernel, sig,
                           configs.attention_aot_flags(d, TEXT_QUERIES=text),
                           {arch: CONFIGS[arch][d] for arch in configs.ARCHS}, configs.strides(attention_fwd_kernel))
        for d in configs.AOT_HEAD_DIMS for text in (False, True)
    ]

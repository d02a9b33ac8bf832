"""Fused Skiparse attention forward: flash attention over each sub-sequence, reorder folded into the addressing.

Grid ``(query tiles, H, B * k)``, launched once for the video queries and once for the text queries
(``TEXT_QUERIES``, a compile-time switch, so that neither variant carries the other's registers). A video query
tile of sub-sequence ``s`` attends to the keys of the same sub-sequence and then to the text keys (a second key
segment); a text query tile is copy ``s`` of the text queries and attends to the same keys. Online softmax in
base 2 with fp32 statistics; rows whose keys are all masked give output 0 and ``lse = +inf``. Video outputs go
straight to their natural rows; the text copies are written to ``text_parts`` (B, k, T, H, D) fp32 and averaged by
the launcher, as the reference does.

The key loop is kept at the length of a dense flash kernel's (``dense_flash.py``; ``python -m skiparse.triton.aot
--loop-report`` measures it): the real keys of a sub-sequence are a prefix of its positions and, when ``k``
divides ``BLOCK_N``, consecutive key tiles are translates of each other by ``BLOCK_N * k`` rows, so full tiles
advance 32-bit offsets and load without predicates; only the partial last tile is bounded; key masks cap scores at
``-inf`` (one min per score) instead of predicating loads; the scale is folded into the exponent's FFMA.
"""
import triton
import triton.language as tl

from . import configs
from .attention_common import (
    LN2, load_rows, load_tile, partial_caps, program_coords, store_rows, text_rows, video_rows,
)
from .index import natural_row, sub_count


@triton.jit
def _attend(acc, m_i, l_i, q, k, v, cap, qk_scale, MASKED: tl.constexpr, PRECISION: tl.constexpr):
    """One key tile of the online softmax, in log2 units; ``qk_scale > 0`` is folded into the exponent (one FFMA
    per score). When ``MASKED``, scores are capped by ``cap`` per key: ``+inf`` keeps the key, ``-inf`` masks it
    (one min per score; a masked key's NaN score becomes ``-inf``, a kept one's NaN still ends as NaN). A row with
    no key yet keeps a ``-inf`` maximum, taken as 0 in the exponents."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
    if MASKED:
        s = tl.minimum(s, cap[None, :])
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    if MASKED:
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:  # an unmasked tile leaves every row with a finite maximum
        m_use = m_new
    p = tl.math.exp2(s * qk_scale - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, m_new, l_i


@triton.jit
def _key_segment(acc, m_i, l_i, q, qk_scale, k_base, v_base, mask_base, sk, sv, n_keys, rows0, row_step, sub,
                 sparsity, offs_n, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                 HAS_MASK: tl.constexpr, GATHER: tl.constexpr, PRECISION: tl.constexpr):
    """Attend to the ``n_keys`` keys of one segment. Key ``j`` of a full tile starting at ``start`` is row
    ``start / BLOCK_N * row_step + rows0[j]``, so full tiles advance their pointers and load unpredicated; only
    the partial last tile is bounded. ``GATHER`` (group-skip with ``BLOCK_N % k != 0``, where tiles are not
    translates of each other) recomputes each tile's rows instead. The key mask is read in position order as
    score caps (``mask_base[pos]``: contiguous fp32, ``+inf`` keep, ``-inf`` masked) and acts on the scores,
    never on the K/V loads."""
    # 32-bit element offsets, carried from tile to tile (half the registers of carried 64-bit pointers).
    k_off = rows0[:, None] * sk + offs_d[None, :]
    v_off = rows0[:, None] * sv + offs_d[None, :]
    full = n_keys // BLOCK_N * BLOCK_N
    for start in range(0, full, BLOCK_N):
        if GATHER:
            rows = natural_row(start + offs_n, sub, sparsity, True)
            k_off = rows[:, None] * sk + offs_d[None, :]
            v_off = rows[:, None] * sv + offs_d[None, :]
        k = load_tile(k_base + k_off, offs_n, offs_d, HEAD_DIM, BLOCK_D, False)
        v = load_tile(v_base + v_off, offs_n, offs_d, HEAD_DIM, BLOCK_D, False)
        cap = tl.load(mask_base + start + offs_n) if HAS_MASK else None
        acc, m_i, l_i = _attend(acc, m_i, l_i, q, k, v, cap, qk_scale, HAS_MASK, PRECISION)
        if not GATHER:
            k_off += row_step * sk
            v_off += row_step * sv
    # The partial last tile, if any: a loop of at most one trip, so that it is scheduled on its own.
    for start in tl.range(full, n_keys, BLOCK_N, num_stages=1):
        if GATHER:
            rows = natural_row(start + offs_n, sub, sparsity, True)
        else:
            rows = rows0 + start // BLOCK_N * row_step
        k_ptrs = k_base + rows[:, None] * sk + offs_d[None, :]
        v_ptrs = v_base + rows[:, None] * sv + offs_d[None, :]
        real = offs_n < n_keys - start
        k = load_tile(k_ptrs, real, offs_d, HEAD_DIM, BLOCK_D, True)
        v = load_tile(v_ptrs, real, offs_d, HEAD_DIM, BLOCK_D, True)
        cap = partial_caps(mask_base + start + offs_n, real, HAS_MASK)
        acc, m_i, l_i = _attend(acc, m_i, l_i, q, k, v, cap, qk_scale, True, PRECISION)
    return acc, m_i, l_i


@triton.jit
def attention_fwd_kernel(
    Q, K, V, TQ, TK, TV, TMASK, VMASK,  # inputs; key masks as fp32 score caps: TMASK (B, T), VMASK (B, k, SUB)
    O, LSE, TPARTS, TLSE,  # outputs: (B, L, H, D), (B, H, L), (B, k, T, H, D), (B, H, k, T), all contiguous
    qk_scale,  # softmax scale * log2(e), > 0
    L, T, SUB, sparsity, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    stq_b, stq_l, stq_h, stk_b, stk_l, stk_h, stv_b, stv_l, stv_h,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    HAS_TMASK: tl.constexpr, HAS_VMASK: tl.constexpr, PRECISION: tl.constexpr, TEXT_QUERIES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GATHER: tl.constexpr,
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
    # Video keys: the real positions [0, sub_count) of sub-sequence s; a tile of BLOCK_N positions spans
    # BLOCK_N * k natural rows. Then the text keys, contiguous rows.
    acc, m_i, l_i = _key_segment(
        acc, m_i, l_i, q, qk_scale, K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h, VMASK + (b * sparsity + s) * SUB,
        sk_l, sv_l,
        sub_count(s, L, sparsity, GROUP), natural_row(offs_n, s, sparsity, GROUP), BLOCK_N * sparsity, s, sparsity,
        offs_n, offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, HAS_VMASK, GATHER, PRECISION)
    acc, m_i, l_i = _key_segment(
        acc, m_i, l_i, q, qk_scale, TK + b * stk_b + h * stk_h, TV + b * stv_b + h * stv_h, TMASK + b * T, stk_l,
        stv_l, T, offs_n, BLOCK_N, s, sparsity, offs_n, offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, HAS_TMASK, False,
        PRECISION)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(l_i == 0.0, float("inf"), (m_i + tl.math.log2(l_safe)) * LN2)
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
               configs.cfg(4, 2, BLOCK_M=64, BLOCK_N=32)]},
    90: {64: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=128), configs.cfg(8, 3, BLOCK_M=128, BLOCK_N=64),
              configs.cfg(4, 2, BLOCK_M=64, BLOCK_N=64)],
         128: [configs.cfg(8, 3, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32),
               configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)]},
}
INTERPRETER = configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=16)
_KEY = ["SUB", "T", "HEAD_DIM", "GROUP", "TEXT_QUERIES"]

# One autotuner per head-dim class, so that each only tries the configs tuned for it. GATHER follows the config's
# BLOCK_N and the launch's k (False whenever k divides BLOCK_N: k = 1, 2, 4, 8 with the shipped tiles).
with_gather = triton.heuristics({"GATHER": lambda a: a["GROUP"] and a["BLOCK_N"] % a["sparsity"] != 0})
attention_fwd = {
    d: triton.autotune(configs.pick(CONFIGS, INTERPRETER, d), key=_KEY)(with_gather(attention_fwd_kernel))
    for d in configs.AOT_HEAD_DIMS
}


def aot_specs() -> list[configs.KernelSpec]:
    sig = configs.signature(attention_fwd_kernel, "bf16", data=("Q", "K", "V", "TQ", "TK", "TV", "O"),
                            fp32=("LSE", "TPARTS", "TLSE", "TMASK", "VMASK"), floats=("qk_scale",))
    return [
        configs.KernelSpec(f"attention_fwd d{d} {'text' if text else 'video'}-q", attention_fwd_kernel, sig,
                           configs.attention_aot_flags(d, TEXT_QUERIES=text, GATHER=False),
                           {arch: CONFIGS[arch][d] for arch in configs.ARCHS}, configs.strides(attention_fwd_kernel))
        for d in configs.AOT_HEAD_DIMS for text in (False, True)
    ]

"""Fused Skiparse attention backward (flash recomputation from the saved logsumexp), in three kernels.

- ``row_delta_kernel``: ``delta = rowsum(dO * O)`` per query row (video rows, and each text copy with
  ``dO = dtext_out / k``, since ``text_out`` is the mean of the k copies).
- ``attention_bwd_dkdv_kernel``: grid ``(key tiles, H, B * k)``, launched for the video keys and for the text
  keys (``TEXT_KEYS``); a key tile of sub-sequence ``s`` walks that sub-sequence's video queries and copy ``s``
  of the text queries. Video dK/dV rows are written in place (each row belongs to one sub-sequence); text dK/dV
  go to per-copy fp32 parts that the launcher sums.
- ``attention_bwd_dq_kernel``: grid ``(query tiles, H, B * k)``, per query segment; the mirror walk over keys.
  Text dQ also goes to per-copy parts. No atomics, so the result is deterministic.
"""
import triton
import triton.language as tl

from . import configs
from .attention_common import (
    load_keys, load_queries, load_rows, program_coords, store_rows, text_rows, video_rows,
)


@triton.jit
def row_delta_kernel(
    A, P, OUT,  # A (B, N, H, D) dO rows; P (B, S, N, H, D) outputs; OUT (B, H, S, N) fp32; all contiguous
    scale, N, H, S,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    tile, h, b, s = program_coords(S)
    rows, valid = text_rows(tile * BLOCK_M, tl.arange(0, BLOCK_M), N)
    offs_d = tl.arange(0, BLOCK_D)
    a = load_rows(A + (b * N * H + h) * HEAD_DIM, rows, H * HEAD_DIM, valid, offs_d, HEAD_DIM).to(tl.float32)
    p = load_rows(P + ((b * S + s) * N * H + h) * HEAD_DIM, rows, H * HEAD_DIM, valid, offs_d, HEAD_DIM)
    tl.store(OUT + ((b * H + h) * S + s) * N + rows, scale * tl.sum(a * p.to(tl.float32), 1), mask=valid)


@triton.jit
def _dkdv_step(dk, dv, k, v, kvalid, q, do, lse2, delta, do_scale, qk_scale, PRECISION: tl.constexpr):
    """Add one query tile's contribution to a key tile's dK (unscaled) and dV; works on transposed scores."""
    p_t = tl.math.exp2(tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale - lse2[None, :])
    p_t = tl.where(kvalid[:, None], p_t, 0.0)
    dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION) * do_scale
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION) * do_scale
    ds_t = p_t * (dp_t - delta[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _dq_step(dq, q, do, lse2, delta, do_scale, k, v, kvalid, qk_scale, PRECISION: tl.constexpr):
    """Add one key tile's contribution to a query tile's dQ (unscaled)."""
    p = tl.math.exp2(tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale - lse2[:, None])
    p = tl.where(kvalid[None, :], p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION) * do_scale
    ds = p * (dp - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)


@triton.jit
def attention_bwd_dkdv_kernel(
    Q, K, V, TQ, TK, TV, TMASK, VMASK,
    DO, DTO, LSE, TLSE, DELTA, TDELTA,  # dO (B, L, H, D), dtext_out (B, T, H, D) contiguous; stats as in fwd
    DK, DV, DTK, DTV,  # (B, L, H, D) contiguous; text parts (B, k, T, H, D) fp32
    sm_scale, qk_scale, inv_k,
    L, T, SUB, sparsity, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    stq_b, stq_l, stq_h, stk_b, stk_l, stk_h, stv_b, stv_l, stv_h,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    HAS_TMASK: tl.constexpr, HAS_VMASK: tl.constexpr, PRECISION: tl.constexpr, TEXT_KEYS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    tile, h, b, s = program_coords(sparsity)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)

    # Masked keys get zero gradients, which are stored too: every real row is written exactly once.
    if TEXT_KEYS:
        k_rows, k_real = text_rows(tile * BLOCK_N, offs_n, T)
        k_valid, k, v = load_keys(TK + b * stk_b + h * stk_h, TV + b * stv_b + h * stv_h, stk_l, stv_l, k_rows,
                                  k_real, TMASK + b * T, offs_d, HEAD_DIM, HAS_TMASK)
    else:
        k_rows, k_real = video_rows(tile * BLOCK_N, offs_n, s, SUB, L, sparsity, GROUP)
        k_valid, k, v = load_keys(K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h, sk_l, sv_l, k_rows, k_real,
                                  VMASK + b * L, offs_d, HEAD_DIM, HAS_VMASK)

    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    q_base, do_base = Q + b * sq_b + h * sq_h, DO + (b * L * H + h) * HEAD_DIM
    stats = (b * H + h) * L
    for start in range(0, SUB, BLOCK_M):
        rows, valid = video_rows(start, offs_m, s, SUB, L, sparsity, GROUP)
        q, do, lse2, delta = load_queries(q_base, sq_l, do_base, H * HEAD_DIM, LSE + stats, DELTA + stats, rows,
                                          valid, offs_d, HEAD_DIM)
        dk, dv = _dkdv_step(dk, dv, k, v, k_valid, q, do, lse2, delta, 1.0, qk_scale, PRECISION)

    q_base, do_base = TQ + b * stq_b + h * stq_h, DTO + (b * T * H + h) * HEAD_DIM
    stats = ((b * H + h) * sparsity + s) * T
    for start in range(0, T, BLOCK_M):
        rows, valid = text_rows(start, offs_m, T)
        q, do, lse2, delta = load_queries(q_base, stq_l, do_base, H * HEAD_DIM, TLSE + stats, TDELTA + stats, rows,
                                          valid, offs_d, HEAD_DIM)
        dk, dv = _dkdv_step(dk, dv, k, v, k_valid, q, do, lse2, delta, inv_k, qk_scale, PRECISION)

    dk *= sm_scale
    if TEXT_KEYS:
        base = ((b * sparsity + s) * T * H + h) * HEAD_DIM
        store_rows(DTK + base, k_rows, H * HEAD_DIM, k_real, offs_d, dk, HEAD_DIM)
        store_rows(DTV + base, k_rows, H * HEAD_DIM, k_real, offs_d, dv, HEAD_DIM)
    else:
        base = (b * L * H + h) * HEAD_DIM
        store_rows(DK + base, k_rows, H * HEAD_DIM, k_real, offs_d, dk, HEAD_DIM)
        store_rows(DV + base, k_rows, H * HEAD_DIM, k_real, offs_d, dv, HEAD_DIM)


@triton.jit
def attention_bwd_dq_kernel(
    Q, K, V, TQ, TK, TV, TMASK, VMASK,
    DO, DTO, LSE, TLSE, DELTA, TDELTA,
    DQ, DTQ,  # (B, L, H, D) contiguous; text parts (B, k, T, H, D) fp32
    sm_scale, qk_scale, inv_k,
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
        stats = ((b * H + h) * sparsity + s) * T
        q, do, lse2, delta = load_queries(TQ + b * stq_b + h * stq_h, stq_l, DTO + (b * T * H + h) * HEAD_DIM,
                                          H * HEAD_DIM, TLSE + stats, TDELTA + stats, q_rows, q_valid, offs_d,
                                          HEAD_DIM)
        do_scale = inv_k
    else:
        q_rows, q_valid = video_rows(tile * BLOCK_M, offs_m, s, SUB, L, sparsity, GROUP)
        stats = (b * H + h) * L
        q, do, lse2, delta = load_queries(Q + b * sq_b + h * sq_h, sq_l, DO + (b * L * H + h) * HEAD_DIM,
                                          H * HEAD_DIM, LSE + stats, DELTA + stats, q_rows, q_valid, offs_d, HEAD_DIM)
        do_scale = 1.0

    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    k_base, v_base = K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h
    for start in range(0, SUB, BLOCK_N):
        rows, real = video_rows(start, offs_n, s, SUB, L, sparsity, GROUP)
        valid, k, v = load_keys(k_base, v_base, sk_l, sv_l, rows, real, VMASK + b * L, offs_d, HEAD_DIM, HAS_VMASK)
        dq = _dq_step(dq, q, do, lse2, delta, do_scale, k, v, valid, qk_scale, PRECISION)

    k_base, v_base = TK + b * stk_b + h * stk_h, TV + b * stv_b + h * stv_h
    for start in range(0, T, BLOCK_N):
        rows, real = text_rows(start, offs_n, T)
        valid, k, v = load_keys(k_base, v_base, stk_l, stv_l, rows, real, TMASK + b * T, offs_d, HEAD_DIM, HAS_TMASK)
        dq = _dq_step(dq, q, do, lse2, delta, do_scale, k, v, valid, qk_scale, PRECISION)

    dq *= sm_scale
    if TEXT_QUERIES:
        parts = DTQ + ((b * sparsity + s) * T * H + h) * HEAD_DIM
        store_rows(parts, q_rows, H * HEAD_DIM, q_valid, offs_d, dq, HEAD_DIM)
    else:
        store_rows(DQ + (b * L * H + h) * HEAD_DIM, q_rows, H * HEAD_DIM, q_valid, offs_d, dq, HEAD_DIM)


# arch -> head-dim class -> configs, from the AOT resource reports (no spills). dK/dV keeps two (BLOCK_N, D) fp32
# accumulators live and dQ one, hence the narrow tiles at D = 128.
DKDV_CONFIGS = {
    80: {64: [configs.cfg(4, 2, BLOCK_M=16, BLOCK_N=64), configs.cfg(8, 1, BLOCK_M=32, BLOCK_N=128)],
         128: [configs.cfg(8, 2, BLOCK_M=32, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)]},
    90: {64: [configs.cfg(8, 2, BLOCK_M=32, BLOCK_N=128), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)],
         128: [configs.cfg(8, 2, BLOCK_M=32, BLOCK_N=64)]},
}
DQ_CONFIGS = {
    80: {64: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32)],
         128: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)]},
    90: {64: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32)],
         128: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32)]},
}
DELTA_CONFIG = configs.cfg(8, 1, BLOCK_M=64)
INTERPRETER = configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=16)
_KEY = ["SUB", "T", "HEAD_DIM", "GROUP"]

attention_bwd_dkdv = {
    d: triton.autotune(configs.pick(DKDV_CONFIGS, INTERPRETER, d), key=[*_KEY, "TEXT_KEYS"])(attention_bwd_dkdv_kernel)
    for d in configs.AOT_HEAD_DIMS
}
attention_bwd_dq = {
    d: triton.autotune(configs.pick(DQ_CONFIGS, INTERPRETER, d), key=[*_KEY, "TEXT_QUERIES"])(attention_bwd_dq_kernel)
    for d in configs.AOT_HEAD_DIMS
}


def aot_specs() -> list[configs.KernelSpec]:
    stats, floats, masks = ("LSE", "TLSE", "DELTA", "TDELTA"), ("sm_scale", "qk_scale", "inv_k"), ("TMASK", "VMASK")
    data = ("Q", "K", "V", "TQ", "TK", "TV", "DO", "DTO")
    kernels = [  # (name, kernel, segment switch, output tensors, fp32 outputs, tuned configs)
        ("attention_bwd_dkdv", attention_bwd_dkdv_kernel, "TEXT_KEYS", ("DK", "DV"), ("DTK", "DTV"), DKDV_CONFIGS),
        ("attention_bwd_dq", attention_bwd_dq_kernel, "TEXT_QUERIES", ("DQ",), ("DTQ",), DQ_CONFIGS),
    ]
    specs = []
    for name, fn, switch, outs, parts, tuned in kernels:
        sig = configs.signature(fn, "bf16", data=(*data, *outs), fp32=(*stats, *parts), u8=masks, floats=floats)
        for d in configs.AOT_HEAD_DIMS:
            for text in (False, True):
                specs.append(configs.KernelSpec(
                    f"{name} d{d} {'text' if text else 'video'}-{switch[5]}".lower(), fn, sig,
                    configs.attention_aot_flags(d, **{switch: text}), {arch: tuned[arch][d] for arch in configs.ARCHS},
                    configs.strides(fn),
                ))
    delta = configs.signature(row_delta_kernel, "bf16", data=("A", "P"), fp32=("OUT",), floats=("scale",))
    specs += [configs.KernelSpec(f"row_delta d{d}", row_delta_kernel, delta, dict(HEAD_DIM=d, BLOCK_D=d),
                                 {arch: [DELTA_CONFIG] for arch in configs.ARCHS}) for d in configs.AOT_HEAD_DIMS]
    return specs

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
    key_kept, load_queries, load_rows, load_tile, partial_caps, program_coords, store_rows, text_rows, video_rows,
)
from .index import natural_row, sub_count


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
def _dkdv_step(dk, dv, k, v, q, do, lse2, delta, qk_scale, PRECISION: tl.constexpr):
    """Add one query tile's contribution to a key tile's dK (unscaled) and dV, on transposed scores: ``k, v``
    (BLOCK_N, D), ``q, do`` (BLOCK_M, D), ``lse2, delta`` (BLOCK_M,). Masked keys are not masked here: their rows
    are zeroed once after the walk."""
    p_t = tl.math.exp2(tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale - lse2[None, :])
    dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    dk += tl.dot((p_t * (dp_t - delta[None, :])).to(q.dtype), q, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _query_segment(dk, dv, k, v, qk_scale, q_base, do_base, lse_base, delta_base, sq, sdo, lse_shift, delta_scale,
                   n_rows, rows0, row_step, sub, sparsity, offs_m, offs_d, HEAD_DIM: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, GATHER: tl.constexpr, PRECISION: tl.constexpr):
    """Walk the ``n_rows`` queries of one segment for a key tile's dK/dV. As the forward's key walk
    (``attention_fwd._key_segment``): query ``j`` of the tile starting at ``start`` is row
    ``start / BLOCK_M * row_step + rows0[j]``, so full tiles advance 32-bit offsets and load unpredicated; only the
    partial last tile is bounded; ``GATHER`` recomputes each tile's rows (group-skip with ``BLOCK_M % k != 0``).
    The statistics are indexed by row: ``lse_base[row]``, ``delta_base[row]``."""
    rows = rows0
    q_off = rows[:, None] * sq + offs_d[None, :]
    do_off = rows[:, None] * sdo + offs_d[None, :]
    full = n_rows // BLOCK_M * BLOCK_M
    for start in range(0, full, BLOCK_M):
        q, do, lse2, delta = load_queries(q_base + q_off, do_base + do_off, lse_base + rows, delta_base + rows, offs_m,
                                          lse_shift, delta_scale, offs_d, HEAD_DIM, BLOCK_D, False)
        dk, dv = _dkdv_step(dk, dv, k, v, q, do, lse2, delta, qk_scale, PRECISION)
        rows, q_off, do_off = _next_rows(rows, q_off, do_off, sq, sdo, start + BLOCK_M, row_step, sub, sparsity,
                                         offs_m, offs_d, GATHER)
    # The partial last tile (rows: the next tile's), if any: a loop of at most one trip, so that it is scheduled on
    # its own.
    for start in tl.range(full, n_rows, BLOCK_M, num_stages=1):
        q, do, lse2, delta = load_queries(q_base + q_off, do_base + do_off, lse_base + rows, delta_base + rows,
                                          offs_m < n_rows - start, lse_shift, delta_scale, offs_d, HEAD_DIM, BLOCK_D,
                                          True)
        dk, dv = _dkdv_step(dk, dv, k, v, q, do, lse2, delta, qk_scale, PRECISION)
    return dk, dv


@triton.jit
def _next_rows(rows, a_off, b_off, sa, sb, start, row_step, sub, sparsity, offs, offs_d, GATHER: tl.constexpr):
    """Rows of the tile starting at position ``start`` and the element offsets of two (rows, D) tensors with row
    strides ``sa``, ``sb`` there, from those of the previous tile: a translation by ``row_step`` rows, or (when
    ``GATHER``) computed anew."""
    if GATHER:
        rows = natural_row(start + offs, sub, sparsity, True)
        return rows, rows[:, None] * sa + offs_d[None, :], rows[:, None] * sb + offs_d[None, :]
    else:
        return rows + row_step, a_off + row_step * sa, b_off + row_step * sb


@triton.jit
def _dq_step(dq, q, do, lse2, delta, k, v, cap, qk_scale, MASKED: tl.constexpr, PRECISION: tl.constexpr):
    """Add one key tile's contribution to a query tile's dQ (unscaled): ``q, do`` (BLOCK_M, D), ``lse2, delta``
    (BLOCK_M,), ``k, v`` (BLOCK_N, D). When ``MASKED``, exponents are capped by ``cap`` (BLOCK_N,) per key: ``+inf``
    keeps it, ``-inf`` gives it probability 0 (one min per score, as the forward's cap on its scores)."""
    x = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale - lse2[:, None]
    if MASKED:  # on the exponent, not the score: the backward's qk_scale may be negative (see the launcher)
        x = tl.minimum(x, cap[None, :])
    p = tl.math.exp2(x)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    return dq + tl.dot((p * (dp - delta[:, None])).to(k.dtype), k, input_precision=PRECISION)


@triton.jit
def _key_segment(dq, q, do, lse2, delta, qk_scale, k_base, v_base, cap_base, sk, sv, n_keys, rows0, row_step, sub,
                 sparsity, offs_n, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                 HAS_MASK: tl.constexpr, GATHER: tl.constexpr, PRECISION: tl.constexpr):
    """Walk the ``n_keys`` keys of one segment for a query tile's dQ, tiles addressed as in :func:`_query_segment`.
    The key mask is read as the forward reads it (``attention_fwd._key_segment``): fp32 caps in position order
    (``cap_base[pos]``), one contiguous run per tile, acting on the exponents, never on the K/V loads."""
    rows = rows0
    k_off = rows[:, None] * sk + offs_d[None, :]
    v_off = rows[:, None] * sv + offs_d[None, :]
    full = n_keys // BLOCK_N * BLOCK_N
    for start in range(0, full, BLOCK_N):
        k = load_tile(k_base + k_off, offs_n, offs_d, HEAD_DIM, BLOCK_D, False)
        v = load_tile(v_base + v_off, offs_n, offs_d, HEAD_DIM, BLOCK_D, False)
        cap = tl.load(cap_base + start + offs_n) if HAS_MASK else None
        dq = _dq_step(dq, q, do, lse2, delta, k, v, cap, qk_scale, HAS_MASK, PRECISION)
        rows, k_off, v_off = _next_rows(rows, k_off, v_off, sk, sv, start + BLOCK_N, row_step, sub, sparsity, offs_n,
                                        offs_d, GATHER)
    # The partial last tile, if any: a loop of at most one trip, so that it is scheduled on its own.
    for start in tl.range(full, n_keys, BLOCK_N, num_stages=1):
        real = offs_n < n_keys - start
        k = load_tile(k_base + k_off, real, offs_d, HEAD_DIM, BLOCK_D, True)
        v = load_tile(v_base + v_off, real, offs_d, HEAD_DIM, BLOCK_D, True)
        cap = partial_caps(cap_base + start + offs_n, real, HAS_MASK)
        dq = _dq_step(dq, q, do, lse2, delta, k, v, cap, qk_scale, True, PRECISION)
    return dq


@triton.jit
def attention_bwd_dkdv_kernel(
    Q, K, V, TQ, TK, TV, TMASK, VMASK,  # key masks as fp32 score caps, as in the forward: (B, T), (B, k, SUB)
    DO, DTO, LSE, TLSE, DELTA, TDELTA,  # dO (B, L, H, D), dtext_out (B, T, H, D) contiguous; stats as in fwd
    DK, DV, DTK, DTV,  # (B, L, H, D) contiguous; text parts (B, k, T, H, D) fp32
    sm_scale, qk_scale, inv_k,
    L, T, SUB, sparsity, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    stq_b, stq_l, stq_h, stk_b, stk_l, stk_h, stv_b, stv_l, stv_h,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    HAS_TMASK: tl.constexpr, HAS_VMASK: tl.constexpr, PRECISION: tl.constexpr, TEXT_KEYS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GATHER: tl.constexpr,
):
    tile, h, b, s = program_coords(sparsity)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    if TEXT_KEYS:
        k_rows, k_real = text_rows(tile * BLOCK_N, offs_n, T)
        k = load_rows(TK + b * stk_b + h * stk_h, k_rows, stk_l, k_real, offs_d, HEAD_DIM)
        v = load_rows(TV + b * stv_b + h * stv_h, k_rows, stv_l, k_real, offs_d, HEAD_DIM)
    else:
        k_rows, k_real = video_rows(tile * BLOCK_N, offs_n, s, SUB, L, sparsity, GROUP)
        k = load_rows(K + b * sk_b + h * sk_h, k_rows, sk_l, k_real, offs_d, HEAD_DIM)
        v = load_rows(V + b * sv_b + h * sv_h, k_rows, sv_l, k_real, offs_d, HEAD_DIM)

    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    # The video queries of sub-sequence s (a tile of BLOCK_M positions spans BLOCK_M * k natural rows), then text
    # copy s, whose output gradient is dtext_out / k: P is scaled by 1/k through the logsumexp (+ log2 k) and delta,
    # computed by the launcher for dO = dtext_out / k, is scaled back by k, so that no score is scaled twice.
    stats = (b * H + h) * L
    dk, dv = _query_segment(
        dk, dv, k, v, qk_scale, Q + b * sq_b + h * sq_h, DO + (b * L * H + h) * HEAD_DIM, LSE + stats, DELTA + stats,
        sq_l, H * HEAD_DIM, 0.0, 1.0, sub_count(s, L, sparsity, GROUP), natural_row(offs_m, s, sparsity, GROUP),
        BLOCK_M * sparsity, s, sparsity, offs_m, offs_d, HEAD_DIM, BLOCK_D, BLOCK_M, GATHER, PRECISION)
    stats = ((b * H + h) * sparsity + s) * T
    dk, dv = _query_segment(
        dk, dv, k, v, qk_scale, TQ + b * stq_b + h * stq_h, DTO + (b * T * H + h) * HEAD_DIM, TLSE + stats,
        TDELTA + stats, stq_l, H * HEAD_DIM, -tl.math.log2(inv_k), 1.0 / inv_k, T, offs_m, BLOCK_M, s, sparsity,
        offs_m, offs_d, HEAD_DIM, BLOCK_D, BLOCK_M, False, PRECISION)

    # Masked keys get zero gradients, which are stored too: every real row is written exactly once. Their caps are
    # read only now, so that they hold no registers during the walk.
    if TEXT_KEYS:
        k_valid = key_kept(k_real, TMASK + b * T + k_rows, HAS_TMASK)
    else:
        k_valid = key_kept(k_real, VMASK + (b * sparsity + s) * SUB + tile * BLOCK_N + offs_n, HAS_VMASK)
    dk = tl.where(k_valid[:, None], dk * sm_scale, 0.0)
    dv = tl.where(k_valid[:, None], dv, 0.0)
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
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GATHER: tl.constexpr,
):
    tile, h, b, s = program_coords(sparsity)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    # A text copy's output gradient is dtext_out / k: scaled through the logsumexp and delta, as in dK/dV.
    if TEXT_QUERIES:
        q_rows, q_valid = text_rows(tile * BLOCK_M, offs_m, T)
        stats = ((b * H + h) * sparsity + s) * T + q_rows
        q, do, lse2, delta = load_queries(
            TQ + b * stq_b + h * stq_h + q_rows[:, None] * stq_l + offs_d[None, :],
            DTO + ((b * T + q_rows[:, None]) * H + h) * HEAD_DIM + offs_d[None, :], TLSE + stats, TDELTA + stats,
            q_valid, -tl.math.log2(inv_k), 1.0 / inv_k, offs_d, HEAD_DIM, BLOCK_D, True)
    else:
        q_rows, q_valid = video_rows(tile * BLOCK_M, offs_m, s, SUB, L, sparsity, GROUP)
        stats = (b * H + h) * L + q_rows
        q, do, lse2, delta = load_queries(
            Q + b * sq_b + h * sq_h + q_rows[:, None] * sq_l + offs_d[None, :],
            DO + ((b * L + q_rows[:, None]) * H + h) * HEAD_DIM + offs_d[None, :], LSE + stats, DELTA + stats,
            q_valid, 0.0, 1.0, offs_d, HEAD_DIM, BLOCK_D, True)

    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    dq = _key_segment(
        dq, q, do, lse2, delta, qk_scale, K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h,
        VMASK + (b * sparsity + s) * SUB, sk_l, sv_l,
        sub_count(s, L, sparsity, GROUP), natural_row(offs_n, s, sparsity, GROUP), BLOCK_N * sparsity, s, sparsity,
        offs_n, offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, HAS_VMASK, GATHER, PRECISION)
    dq = _key_segment(
        dq, q, do, lse2, delta, qk_scale, TK + b * stk_b + h * stk_h, TV + b * stv_b + h * stv_h, TMASK + b * T,
        stk_l, stv_l, T, offs_n, BLOCK_N, s, sparsity, offs_n, offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, HAS_TMASK, False,
        PRECISION)

    dq *= sm_scale
    if TEXT_QUERIES:
        parts = DTQ + ((b * sparsity + s) * T * H + h) * HEAD_DIM
        store_rows(parts, q_rows, H * HEAD_DIM, q_valid, offs_d, dq, HEAD_DIM)
    else:
        store_rows(DQ + (b * L * H + h) * HEAD_DIM, q_rows, H * HEAD_DIM, q_valid, offs_d, dq, HEAD_DIM)


# arch -> head-dim class -> configs, from the AOT resource reports (no spills) and the loop report. dK/dV keeps
# two (BLOCK_N, D) fp32 accumulators live and dQ one, hence the narrow tiles at D = 128. On sm_90 a warpgroup's
# matrix instructions span 64 rows, so dK/dV's BLOCK_N is 64 per warpgroup (32x64 with 8 warps had both warpgroups
# compute the same S^T and dP^T tiles).
DKDV_CONFIGS = {
    80: {64: [configs.cfg(4, 2, BLOCK_M=16, BLOCK_N=64), configs.cfg(8, 1, BLOCK_M=32, BLOCK_N=128)],
         128: [configs.cfg(8, 2, BLOCK_M=32, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)]},
    90: {64: [configs.cfg(8, 2, BLOCK_M=32, BLOCK_N=128), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)],
         128: [configs.cfg(8, 2, BLOCK_M=32, BLOCK_N=128)]},
}
DQ_CONFIGS = {
    80: {64: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32), configs.cfg(4, 2, BLOCK_M=64, BLOCK_N=32)],
         128: [configs.cfg(4, 2, BLOCK_M=64, BLOCK_N=32), configs.cfg(8, 2, BLOCK_M=64, BLOCK_N=64)]},
    90: {64: [configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=64), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32)],
         128: [configs.cfg(4, 2, BLOCK_M=64, BLOCK_N=32), configs.cfg(8, 2, BLOCK_M=128, BLOCK_N=32)]},
}
DELTA_CONFIG = configs.cfg(8, 1, BLOCK_M=64)
INTERPRETER = configs.cfg(4, 1, BLOCK_M=16, BLOCK_N=16)
_KEY = ["SUB", "T", "HEAD_DIM", "GROUP"]

# GATHER follows the walked tile (dK/dV walks query tiles of BLOCK_M, dQ key tiles of BLOCK_N) and the launch's k,
# as in the forward.
dkdv_gather = triton.heuristics({"GATHER": lambda a: a["GROUP"] and a["BLOCK_M"] % a["sparsity"] != 0})
dq_gather = triton.heuristics({"GATHER": lambda a: a["GROUP"] and a["BLOCK_N"] % a["sparsity"] != 0})
attention_bwd_dkdv = {
    d: triton.autotune(configs.pick(DKDV_CONFIGS, INTERPRETER, d), key=[*_KEY, "TEXT_KEYS"])(
        dkdv_gather(attention_bwd_dkdv_kernel))
    for d in configs.AOT_HEAD_DIMS
}
attention_bwd_dq = {
    d: triton.autotune(configs.pick(DQ_CONFIGS, INTERPRETER, d), key=[*_KEY, "TEXT_QUERIES"])(
        dq_gather(attention_bwd_dq_kernel))
    for d in configs.AOT_HEAD_DIMS
}


def aot_specs() -> list[configs.KernelSpec]:
    stats, floats = ("LSE", "TLSE", "DELTA", "TDELTA", "TMASK", "VMASK"), ("sm_scale", "qk_scale", "inv_k")
    data = ("Q", "K", "V", "TQ", "TK", "TV", "DO", "DTO")
    kernels = [  # (name, kernel, segment switch, output tensors, fp32 outputs, tuned configs)
        ("attention_bwd_dkdv", attention_bwd_dkdv_kernel, "TEXT_KEYS", ("DK", "DV"), ("DTK", "DTV"), DKDV_CONFIGS),
        ("attention_bwd_dq", attention_bwd_dq_kernel, "TEXT_QUERIES", ("DQ",), ("DTQ",), DQ_CONFIGS),
    ]
    specs = []
    for name, fn, switch, outs, parts, tuned in kernels:
        sig = configs.signature(fn, "bf16", data=(*data, *outs), fp32=(*stats, *parts), floats=floats)
        for d in configs.AOT_HEAD_DIMS:
            for text in (False, True):
                specs.append(configs.KernelSpec(
                    f"{name} d{d} {'text' if text else 'video'}-{switch[5]}".lower(), fn, sig,
                    configs.attention_aot_flags(d, GATHER=False, **{switch: text}),
                    {arch: tuned[arch][d] for arch in configs.ARCHS}, configs.strides(fn),
                ))
    delta = configs.signature(row_delta_kernel, "bf16", data=("A", "P"), fp32=("OUT",), floats=("scale",))
    specs += [configs.KernelSpec(f"row_delta d{d}", row_delta_kernel, delta, dict(HEAD_DIM=d, BLOCK_D=d),
                                 {arch: [DELTA_CONFIG] for arch in configs.ARCHS}) for d in configs.AOT_HEAD_DIMS]
    return specs

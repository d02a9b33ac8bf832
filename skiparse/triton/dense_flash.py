"""Plain dense flash attention, forward and FlashAttention-2 backward: the baselines whose main loops ``python -m
skiparse.triton.aot --loop-report`` sets next to the Skiparse kernels' (the same math in its simplest form, compiled
with the same tile, warps and stages).

Contiguous rows, no masks, no text segment, no Skiparse addressing: ``N`` must be a multiple of both blocks. Online
softmax in base 2 with fp32 statistics and the scale folded into the exponent, as the Skiparse forward does; the
backward recomputes P from the saved logsumexp as the Skiparse backward does: a dK/dV kernel (a key tile walks the
query tiles) and a dQ kernel (a query tile walks the key tiles). Not used by the ops.
"""
import triton
import triton.language as tl

from . import configs
from .attention_common import LOG2E


@triton.jit
def _rows(X, b, h, s_b, s_h, s_l, offs_rows, offs_d):
    """Pointers to rows ``offs_rows`` of (batch b, head h) of a (B, N, H, D) tensor with unit stride on D."""
    return X + b * s_b + h * s_h + offs_rows[:, None] * s_l + offs_d[None, :]


@triton.jit
def dense_flash_fwd_kernel(
    Q, K, V, O,  # (B, N, H, D) with unit stride on D; O contiguous
    qk_scale,  # softmax scale * log2(e)
    N, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    tile, h, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    offs_m = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(_rows(Q, b, h, sq_b, sq_h, sq_l, offs_m, offs_d))
    k_ptrs = _rows(K, b, h, sk_b, sk_h, sk_l, offs_n, offs_d)
    v_ptrs = _rows(V, b, h, sv_b, sv_h, sv_l, offs_n, offs_d)

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM), tl.float32)
    for _ in range(0, N, BLOCK_N):
        s = tl.dot(q, tl.trans(tl.load(k_ptrs)), input_precision=PRECISION)
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(V.dtype.element_ty), tl.load(v_ptrs), input_precision=PRECISION)
        m_i = m_new
        k_ptrs += BLOCK_N * sk_l
        v_ptrs += BLOCK_N * sv_l
    out = acc / l_i[:, None]
    tl.store(O + ((b * N + offs_m[:, None]) * H + h) * HEAD_DIM + offs_d[None, :], out.to(O.dtype.element_ty))


@triton.jit
def dense_flash_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,  # Q, K, V (B, N, H, D), unit stride on D; DO, DK, DV contiguous; LSE (B, H, N)
    sm_scale, qk_scale,  # softmax scale, and times log2(e)
    N, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dK, dV of one key tile: a walk over every query tile on transposed scores (FlashAttention-2). ``LSE``
    (natural log, as the forward saves it) and ``DELTA = rowsum(dO * O)`` are (B, H, N) fp32."""
    tile, h, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    k = tl.load(_rows(K, b, h, sk_b, sk_h, sk_l, offs_n, offs_d))
    v = tl.load(_rows(V, b, h, sv_b, sv_h, sv_l, offs_n, offs_d))
    q_ptrs = _rows(Q, b, h, sq_b, sq_h, sq_l, offs_m, offs_d)
    do_ptrs = DO + ((b * N + offs_m[:, None]) * H + h) * HEAD_DIM + offs_d[None, :]
    lse_ptrs = LSE + (b * H + h) * N + offs_m
    delta_ptrs = DELTA + (b * H + h) * N + offs_m

    dk = tl.zeros((BLOCK_N, HEAD_DIM), tl.float32)
    dv = tl.zeros((BLOCK_N, HEAD_DIM), tl.float32)
    for _ in range(0, N, BLOCK_M):
        q = tl.load(q_ptrs)
        do = tl.load(do_ptrs)
        p_t = tl.math.exp2(tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
                           - tl.load(lse_ptrs)[None, :] * LOG2E)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - tl.load(delta_ptrs)[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
        q_ptrs += BLOCK_M * sq_l
        do_ptrs += BLOCK_M * H * HEAD_DIM
        lse_ptrs += BLOCK_M
        delta_ptrs += BLOCK_M
    out = ((b * N + offs_n[:, None]) * H + h) * HEAD_DIM + offs_d[None, :]
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty))
    tl.store(DV + out, dv.to(DV.dtype.element_ty))


@triton.jit
def dense_flash_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,  # as in dense_flash_bwd_dkdv_kernel; DQ contiguous
    sm_scale, qk_scale,
    N, H,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h,
    HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dQ of one query tile: a walk over every key tile, recomputing P from the logsumexp."""
    tile, h, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    offs_m = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(_rows(Q, b, h, sq_b, sq_h, sq_l, offs_m, offs_d))
    do = tl.load(DO + ((b * N + offs_m[:, None]) * H + h) * HEAD_DIM + offs_d[None, :])
    lse2 = tl.load(LSE + (b * H + h) * N + offs_m) * LOG2E
    delta = tl.load(DELTA + (b * H + h) * N + offs_m)
    k_ptrs = _rows(K, b, h, sk_b, sk_h, sk_l, offs_n, offs_d)
    v_ptrs = _rows(V, b, h, sv_b, sv_h, sv_l, offs_n, offs_d)

    dq = tl.zeros((BLOCK_M, HEAD_DIM), tl.float32)
    for _ in range(0, N, BLOCK_N):
        k = tl.load(k_ptrs)
        p = tl.math.exp2(tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale - lse2[:, None])
        dp = tl.dot(do, tl.trans(tl.load(v_ptrs)), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        k_ptrs += BLOCK_N * sk_l
        v_ptrs += BLOCK_N * sv_l
    out = ((b * N + offs_m[:, None]) * H + h) * HEAD_DIM + offs_d[None, :]
    tl.store(DQ + out, (dq * sm_scale).to(DQ.dtype.element_ty))


def dense_flash_fwd(q, k, v, scale: float, config) -> "torch.Tensor":  # noqa: F821
    """``softmax(scale q k^T) v`` per (batch, head) for ``(B, N, H, D)`` tensors, run with one ``triton.Config``."""
    B, N, H, D = q.shape
    out = q.new_empty((B, N, H, D))
    blocks = config.kwargs
    grid = (triton.cdiv(N, blocks["BLOCK_M"]), H, B)
    dense_flash_fwd_kernel[grid](
        q, k, v, out, scale * LOG2E.value, N, H, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
        HEAD_DIM=D, PRECISION="ieee" if q.dtype.itemsize == 4 else "tf32", num_warps=config.num_warps,
        num_stages=config.num_stages, **blocks,
    )
    return out


def dense_flash_bwd(q, k, v, d_out, lse, delta, scale: float, dkdv_config, dq_config):
    """``(dq, dk, dv)`` of :func:`dense_flash_fwd` for ``(B, N, H, D)`` tensors, given its ``lse`` (natural log) and
    ``delta = rowsum(d_out * out)``, both ``(B, H, N)`` fp32; each kernel runs with one ``triton.Config``."""
    B, N, H, D = q.shape
    d_out = d_out.contiguous()
    dq, dk, dv = (x.new_empty((B, N, H, D)) for x in (q, k, v))
    args = (scale, scale * LOG2E.value, N, H, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3])
    flags = dict(HEAD_DIM=D, PRECISION="ieee" if q.dtype.itemsize == 4 else "tf32")
    for kernel, outs, config, rows in ((dense_flash_bwd_dkdv_kernel, (dk, dv), dkdv_config, "BLOCK_N"),
                                       (dense_flash_bwd_dq_kernel, (dq,), dq_config, "BLOCK_M")):
        grid = (triton.cdiv(N, config.kwargs[rows]), H, B)
        kernel[grid](q, k, v, d_out, lse, delta, *outs, *args, **flags, num_warps=config.num_warps,
                     num_stages=config.num_stages, **config.kwargs)
    return dq, dk, dv


# kernel of the report -> (baseline, data pointers, fp32 scalars)
_BASELINES = {
    "fwd": (dense_flash_fwd_kernel, ("Q", "K", "V", "O"), ("qk_scale",)),
    "dkdv": (dense_flash_bwd_dkdv_kernel, ("Q", "K", "V", "DO", "DK", "DV"), ("sm_scale", "qk_scale")),
    "dq": (dense_flash_bwd_dq_kernel, ("Q", "K", "V", "DO", "DQ"), ("sm_scale", "qk_scale")),
}


def aot_spec(kernel: str, head_dim: int, arch_configs: dict) -> configs.KernelSpec:
    """The baseline of ``kernel`` (``fwd``, ``dkdv`` or ``dq``) as a compile spec, bf16, with the given
    configurations per arch."""
    fn, data, floats = _BASELINES[kernel]
    sig = configs.signature(fn, "bf16", data=data, fp32=("LSE", "DELTA"), floats=floats)
    return configs.KernelSpec(f"dense_flash_{kernel} d{head_dim}", fn, sig, dict(HEAD_DIM=head_dim, PRECISION="tf32"),
                              arch_configs, configs.strides(fn))

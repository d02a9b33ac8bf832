"""Plain dense flash-attention forward: the baseline whose main loop ``python -m skiparse.triton.aot --loop-report``
sets next to the Skiparse kernels' (the same math in its simplest form, compiled with the same tile, warps and
stages).

Contiguous rows, no masks, no text segment, no Skiparse addressing: ``N`` must be a multiple of both blocks. Online
softmax in base 2 with fp32 statistics and the scale folded into the exponent, as the Skiparse forward does.
Not used by the ops.
"""
import triton
import triton.language as tl

from . import configs
from .attention_common import LOG2E


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
    q = tl.load(Q + b * sq_b + h * sq_h + offs_m[:, None] * sq_l + offs_d[None, :])
    k_ptrs = K + b * sk_b + h * sk_h + offs_n[:, None] * sk_l + offs_d[None, :]
    v_ptrs = V + b * sv_b + h * sv_h + offs_n[:, None] * sv_l + offs_d[None, :]

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


def aot_spec(head_dim: int, arch_configs: dict) -> configs.KernelSpec:
    """The baseline as a compile spec, bf16, with the given configurations per arch."""
    sig = configs.signature(dense_flash_fwd_kernel, "bf16", data=("Q", "K", "V", "O"), floats=("qk_scale",))
    return configs.KernelSpec(f"dense_flash_fwd d{head_dim}", dense_flash_fwd_kernel, sig,
                              dict(HEAD_DIM=head_dim, PRECISION="tf32"), arch_configs,
                              configs.strides(dense_flash_fwd_kernel))

"""Row addressing and tile loads shared by the Triton attention kernels.

A program works on one (batch item b, head h, sub-sequence s). Its video rows are the positions of sub-sequence
``s`` mapped to natural rows (:func:`natural_row`); its text rows are the ``T`` text tokens, which every
sub-sequence sees (the "repeat" of the reference, without a copy). Rows past ``L``, the sub-sequence's padding,
are masked by bounds.
"""
import triton
import triton.language as tl

from .index import natural_row

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def video_rows(start, offs, sub, SUB, L, sparsity, GROUP: tl.constexpr):
    """Natural rows (int64) of positions ``start + offs`` of sub-sequence ``sub``, and which of them are real."""
    pos = start + offs
    rows = natural_row(pos, sub, sparsity, GROUP)
    return rows, (pos < SUB) & (rows < L)


@triton.jit
def text_rows(start, offs, T):
    rows = start + offs
    return rows, rows < T


@triton.jit
def load_rows(base, rows, stride_row, valid, offs_d, HEAD_DIM: tl.constexpr):
    """``(len(rows), BLOCK_D)`` tile of rows of a (.., rows, .., D) tensor whose head/batch offset is in ``base``."""
    ptrs = base + rows[:, None] * stride_row + offs_d[None, :]
    return tl.load(ptrs, mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)


@triton.jit
def load_tile(ptrs, rows_ok, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROWS_MASKED: tl.constexpr):
    """Load a ``(rows, BLOCK_D)`` tile from its pointers: predicated only on ``rows_ok`` (when ``ROWS_MASKED``) and
    on the head dim (when ``BLOCK_D`` pads it); a full tile at a power-of-two head dim is a plain load."""
    if ROWS_MASKED:
        return tl.load(ptrs, mask=rows_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    elif BLOCK_D == HEAD_DIM:
        return tl.load(ptrs)
    else:
        return tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)


@triton.jit
def store_rows(base, rows, stride_row, valid, offs_d, x, HEAD_DIM: tl.constexpr):
    ptrs = base + rows[:, None] * stride_row + offs_d[None, :]
    tl.store(ptrs, x.to(base.dtype.element_ty), mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM))


@triton.jit
def key_mask(valid, mask_base, rows, HAS_MASK: tl.constexpr):
    """``valid`` and-ed with a (B, N) uint8 key mask row (1 = attend)."""
    if HAS_MASK:
        valid = valid & (tl.load(mask_base + rows, mask=valid, other=0) != 0)
    return valid


@triton.jit
def program_coords(sparsity):
    """``(tile, head, batch item (int64), sub-sequence)`` of this program in the ``(tiles, H, B * k)`` grid."""
    bs = tl.program_id(2)
    return tl.program_id(0), tl.program_id(1), (bs // sparsity).to(tl.int64), bs % sparsity


@triton.jit
def load_keys(k_base, v_base, k_stride, v_stride, rows, real, mask_base, offs_d, HEAD_DIM: tl.constexpr,
              HAS_MASK: tl.constexpr):
    """``(valid, K tile, V tile)`` of ``rows``: ``valid`` is real and not masked; other rows load as zeros."""
    valid = key_mask(real, mask_base, rows, HAS_MASK)
    k = load_rows(k_base, rows, k_stride, valid, offs_d, HEAD_DIM)
    return valid, k, load_rows(v_base, rows, v_stride, valid, offs_d, HEAD_DIM)


@triton.jit
def load_queries(q_base, q_stride, do_base, do_stride, lse_base, delta_base, rows, valid, offs_d,
                 HEAD_DIM: tl.constexpr):
    """Backward inputs of query ``rows``: Q and dO tiles, logsumexp in log2 units (+inf for absent rows, so their
    probabilities are 0) and delta."""
    q = load_rows(q_base, rows, q_stride, valid, offs_d, HEAD_DIM)
    do = load_rows(do_base, rows, do_stride, valid, offs_d, HEAD_DIM)
    lse2 = tl.load(lse_base + rows, mask=valid, other=float("inf")) * LOG2E
    return q, do, lse2, tl.load(delta_base + rows, mask=valid, other=0.0)

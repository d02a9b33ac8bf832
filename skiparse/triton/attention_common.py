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
def key_kept(valid, cap_ptrs, HAS_MASK: tl.constexpr):
    """``valid`` and-ed with the key mask, read as fp32 score caps (``+inf`` keep, ``-inf`` masked)."""
    if HAS_MASK:
        valid = valid & (tl.load(cap_ptrs, mask=valid, other=float("-inf")) > 0)
    return valid


@triton.jit
def partial_caps(cap_ptrs, real, HAS_MASK: tl.constexpr):
    """Score caps of a partial key tile: the key mask's (``cap_ptrs``) for its ``real`` keys, ``-inf`` past them."""
    if HAS_MASK:
        return tl.load(cap_ptrs, mask=real, other=float("-inf"))
    else:
        return tl.where(real, float("inf"), float("-inf"))


@triton.jit
def program_coords(sparsity):
    """``(tile, head, batch item (int64), sub-sequence)`` of this program in the ``(tiles, H, B * k)`` grid."""
    bs = tl.program_id(2)
    return tl.program_id(0), tl.program_id(1), (bs // sparsity).to(tl.int64), bs % sparsity


@triton.jit
def load_queries(q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, rows_ok, lse_shift, delta_scale, offs_d,
                 HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROWS_MASKED: tl.constexpr):
    """Backward inputs of a query tile from their pointers: Q and dO tiles, the logsumexp in log2 units plus
    ``lse_shift`` (``+inf`` for absent rows, so that their probabilities are 0) and ``delta * delta_scale``.
    Predicated only on ``rows_ok`` when ``ROWS_MASKED`` (see :func:`load_tile`)."""
    q = load_tile(q_ptrs, rows_ok, offs_d, HEAD_DIM, BLOCK_D, ROWS_MASKED)
    do = load_tile(do_ptrs, rows_ok, offs_d, HEAD_DIM, BLOCK_D, ROWS_MASKED)
    if ROWS_MASKED:
        lse = tl.load(lse_ptrs, mask=rows_ok, other=float("inf"))
        delta = tl.load(delta_ptrs, mask=rows_ok, other=0.0)
    else:
        lse = tl.load(lse_ptrs)
        delta = tl.load(delta_ptrs)
    return q, do, lse * LOG2E + lse_shift, delta * delta_scale

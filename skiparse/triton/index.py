"""Skiparse row addressing for Triton kernels: the Triton twin of ``skiparse/index.py`` and ``csrc/skiparse/index.h``.

Position ``pos`` of sub-sequence ``sub`` is natural (padded) row

- single-skip: ``pos * k + sub``
- group-skip:  ``(pos // k) * k^2 + sub * k + pos % k``

Rows ``>= L`` are padding: kernels mask them by bounds, nothing is padded in memory. Both maps increase with
``pos``, so the real positions of a sub-sequence are a prefix, ``[0, sub_count)``.
"""
import triton
import triton.language as tl


@triton.jit
def natural_row(pos, sub, sparsity, GROUP: tl.constexpr):
    """Natural row of position(s) ``pos`` (a block or a scalar) of sub-sequence ``sub``."""
    if GROUP:
        return (pos // sparsity) * sparsity * sparsity + sub * sparsity + pos % sparsity
    else:
        return pos * sparsity + sub


@triton.jit
def sub_count(sub, L, sparsity, GROUP: tl.constexpr):
    """Real (non-padding) positions of sub-sequence ``sub``: its rows ``< L``, positions ``[0, sub_count)``."""
    if GROUP:
        kk = sparsity * sparsity
        return (L // kk) * sparsity + tl.minimum(tl.maximum(L % kk - sub * sparsity, 0), sparsity)
    else:
        return (L - sub + sparsity - 1) // sparsity

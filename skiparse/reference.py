"""Plain PyTorch reference: the upstream Open-Sora Plan code path, written to be obviously right.

pad -> einops rearrange -> repeat text -> one joint SDPA with a key mask -> inverse rearrange -> mean over text
copies. It is the ``reference`` backend and the oracle of the tests; it materialises every permuted copy, which is
exactly what the fused kernels avoid.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from .index import padded_length

# einops patterns of upstream (batch-first here; upstream is sequence-first, same index math).
_FWD = {False: "b (g k) ... -> (k b) g ...", True: "b (n m k) ... -> (m b) (n k) ..."}
_INV = {False: "(k b) g ... -> b (g k) ...", True: "(m b) (n k) ... -> b (n m k) ..."}


def _axes(sparsity: int, group: bool) -> dict[str, int]:
    return {"m": sparsity, "k": sparsity} if group else {"k": sparsity}


def reorder(x: torch.Tensor, sparsity: int, group: bool) -> torch.Tensor:
    """``(B, L, ...) -> (k*B, Lp/k, ...)``: zero-pad to a multiple of k^2, then the upstream rearrange."""
    pad = padded_length(x.shape[1], sparsity) - x.shape[1]
    if pad:
        x = torch.cat([x, x.new_zeros((x.shape[0], pad, *x.shape[2:]))], dim=1)
    return rearrange(x, _FWD[group], **_axes(sparsity, group))


def restore(x: torch.Tensor, sparsity: int, group: bool, length: int) -> torch.Tensor:
    """``(k*B, Lp/k, ...) -> (B, L, ...)``: inverse rearrange, then drop the padding."""
    return rearrange(x, _INV[group], **_axes(sparsity, group))[:, :length]


def _check_padded_copies_fit(q: torch.Tensor, sparsity: int, text_len: int) -> None:
    """Refuses (MemoryError) a CPU problem whose padded copies exceed the machine's RAM: Linux overcommits, so the
    allocation would succeed and the process be OOM-killed while filling it (L = 10 with sparsity = 10^4 pads to
    10^8 rows). Other devices' allocators fail with a clean error."""
    if q.device.type != "cpu":
        return
    B, L, H, D = q.shape
    seq = padded_length(L, sparsity) // sparsity + text_len  # S, rows of each of the k*B joint sequences
    # q, k, v, the output, and SDPA's (k*B, H, S, S) scores (materialised at small D; measured at D = 8 and 64).
    need = (4 * D + seq) * sparsity * B * seq * H * q.element_size()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > ram:
        raise MemoryError(
            f"the reference backend pads L={L} to a multiple of sparsity^2 = {sparsity * sparsity} and would need "
            f"about {need / 2**30:.1f} GiB for q of shape {tuple(q.shape)} (this machine has {ram / 2**30:.1f} "
            "GiB); use the cpu backend, which does not pad, or a smaller sparsity"
        )


def skiparse_attention(q, k, v, sparsity, group, text_q, text_k, text_v, text_mask, video_mask, scale):
    """Reference Skiparse joint attention. Shapes as in :func:`skiparse.skiparse_attention`."""
    B, L, H, D = q.shape
    n = sparsity
    _check_padded_copies_fit(q, n, 0 if text_q is None else text_q.shape[1])
    pad = padded_length(L, n) - L
    qs, ks, vs = (reorder(t, n, group) for t in (q, k, v))  # (nB, Lp/n, H, D)
    has_text = text_q is not None
    if has_text:
        tq, tk, tv = (repeat(t, "b t h d -> (k b) t h d", k=n) for t in (text_q, text_k, text_v))
        qs, ks, vs = (torch.cat(p, dim=1) for p in ((qs, tq), (ks, tk), (vs, tv)))

    # Key mask (True = attend), only when something is masked: padding, video mask or text mask.
    mask = None
    if pad or video_mask is not None or text_mask is not None:
        vm = video_mask if video_mask is not None else torch.ones(B, L, dtype=torch.bool, device=q.device)
        mask = reorder(vm, n, group)  # padding -> False
        if has_text:
            tm = text_mask if text_mask is not None else torch.ones(B, text_q.shape[1], dtype=torch.bool, device=q.device)
            mask = torch.cat([mask, repeat(tm, "b t -> (k b) t", k=n)], dim=1)
    alive = None
    if mask is not None:
        # A sub-sequence whose keys are all masked outputs zeros; unmask it so SDPA yields no NaN (0 * NaN = NaN).
        alive = mask.any(dim=1)
        mask = (mask | ~alive[:, None])[:, None, None, :]

    out = F.scaled_dot_product_attention(
        qs.transpose(1, 2), ks.transpose(1, 2), vs.transpose(1, 2), attn_mask=mask, scale=scale
    ).transpose(1, 2)  # (nB, S, H, D)
    if alive is not None:
        out = out * alive[:, None, None, None].to(out.dtype)

    Ls = qs.shape[1] - (text_q.shape[1] if has_text else 0)
    video_out = restore(out[:, :Ls], n, group, L)
    text_out = rearrange(out[:, Ls:], "(k b) t h d -> b k t h d", k=n).mean(1) if has_text else None
    return video_out, text_out


def conv3d_3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               context: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Reference of ``torch.ops.skiparse.conv3d_3x3``: the conv of ``cat([context, x], dim=2)``, stride 1, zero
    padding 1 in space, none in time."""
    if context is not None:
        x = torch.cat([context, x], dim=2)
    return F.conv3d(x, weight, bias, padding=(0, 1, 1))

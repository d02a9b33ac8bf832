"""One SUV MMDiT block (reference ``SparseMMDiTBlock``): adaLN-zero, joint attention, gated FFNs."""
from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionContext, JointAttention
from .layers import AdaLNZero, FeedForward, gated_add, modulate


_FP16_MAX = 65504.0


def clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """fp16 only: NaN -> 0 and clamp to the fp16 range, as the reference does on both streams in fp16 inference."""
    if x.dtype != torch.float16:
        return x
    return torch.nan_to_num(x, nan=0.0).clamp(-_FP16_MAX, _FP16_MAX)


class SparseMMDiTBlock(nn.Module):
    """Video stream x ``(B, L, D)`` and text stream e ``(B, T, D)``, conditioned on c ``(B, Tc)`` fp32.

    ``context_pre_only=True`` (the model's last block) leaves the text stream untouched and so has no
    ``attn1.to_add_out``, ``ff_enc`` or ``norm2.norm_enc`` (the TP=1 structure of the reference).
    ``double_ff=False`` runs one shared FFN over [video; text], each normalised and modulated by its own adaLN
    chunk (the reference's corrected form; the released model has ``double_ff=True``).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, cond_dim: int, sparsity: int, group: bool,
                 double_ff: bool, attention_bias: bool, ff_bias: bool, eps: float, context_pre_only: bool = False
                 ) -> None:  # fmt: skip
        super().__init__()
        self.context_pre_only = context_pre_only
        self.double_ff = double_ff
        self.sparsity, self.group = sparsity, group
        self.norm1 = AdaLNZero(cond_dim, dim, eps)
        self.attn1 = JointAttention(dim, num_heads, head_dim, attention_bias, eps, sparsity, group,
                                    text_out=not context_pre_only)  # fmt: skip
        self.norm2 = AdaLNZero(cond_dim, dim, eps, with_text_norm=not context_pre_only or not double_ff)
        self.ff = FeedForward(dim, bias=ff_bias)
        self.ff_enc = FeedForward(dim, bias=ff_bias) if double_ff and not context_pre_only else None

    def forward(self, x: torch.Tensor, e: torch.Tensor, c: torch.Tensor, ctx: AttentionContext
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Returns the updated (x, e); e is returned unchanged when ``context_pre_only``."""
        x, e = clamp_fp16(x), clamp_fp16(e)
        shift, scale, gate, e_shift, e_scale, e_gate = self.norm1(c)
        a_x, a_e = self.attn1(modulate(x, self.norm1.norm, shift, scale),
                              modulate(e, self.norm1.norm_enc, e_shift, e_scale), ctx)  # fmt: skip
        x = gated_add(x, gate, a_x)
        if not self.context_pre_only:
            e = gated_add(e, e_gate, a_e)

        x, e = clamp_fp16(x), clamp_fp16(e)
        shift, scale, gate, e_shift, e_scale, e_gate = self.norm2(c)
        x_n = modulate(x, self.norm2.norm, shift, scale)
        if self.double_ff:
            x = gated_add(x, gate, self.ff(x_n))
            if not self.context_pre_only:
                e = gated_add(e, e_gate, self.ff_enc(modulate(e, self.norm2.norm_enc, e_shift, e_scale)))
            return x, e
        e_n = modulate(e, self.norm2.norm_enc, e_shift, e_scale)
        y = self.ff(torch.cat([x_n, e_n], dim=1))
        x = gated_add(x, gate, y[:, : x.shape[1]])
        if not self.context_pre_only:
            e = gated_add(e, e_gate, y[:, x.shape[1] :])
        return x, e

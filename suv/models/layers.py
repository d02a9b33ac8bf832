"""Normalisation, feed-forward and adaLN layers of the SUV block, with the reference's fp32 islands.

Every norm computes in float32 and casts back, as the released inference stack does (spec 2.8), so fp16/bf16
weights give the reference's numerics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class FP32LayerNorm(nn.LayerNorm):
    """Affine LayerNorm computed in float32; ``(..., D) -> (..., D)`` in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """Megatron-style RMSNorm over the last dim (weight only): normalise in fp32, cast back, then scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


class GELUProj(nn.Module):
    """``net.0`` of the FFN: Linear without bias, then tanh-GELU computed in fp32."""

    def __init__(self, dim_in: int, dim_out: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return F.gelu(h.float(), approximate="tanh").to(h.dtype)


class FeedForward(nn.Module):
    """``(..., D) -> (..., D)``: ``net = [GELUProj(D -> 4D), Dropout(0), Linear(4D -> D)]`` (released: no biases)."""

    def __init__(self, dim: int, mult: int = 4, bias: bool = False) -> None:
        super().__init__()
        # Dropout(0) only keeps the index of the second Linear at 2, as in the released key names.
        self.net = nn.ModuleList([GELUProj(dim, dim * mult, bias), nn.Dropout(0.0), nn.Linear(dim * mult, dim, bias=bias)])

        # Recompute in the backward instead of keeping the activations (training's ``checkpoint_ff``; v1.5's
        # ``--recom_ffn_layers``); set by ``SparseUMMDiT.checkpoint_feedforwards``.
        self.recompute = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(self._net, x, use_reentrant=False)
        return self._net(x)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


def modulate(x: torch.Tensor, norm: nn.Module, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``norm(x) * (1 + scale) + shift`` in fp32, cast back; x ``(B, L, D)``, shift/scale ``(B, 1, D)`` fp32."""
    return torch.addcmul(shift, norm(x).float(), 1.0 + scale).to(x.dtype)  # one fused pass over the tokens


def gated_add(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Residual ``x + gate * y`` in fp32 (gate used raw, no ``1 +``), cast back to x's dtype."""
    return torch.addcmul(x.float(), gate, y.float()).to(x.dtype)


class AdaLNZero(nn.Module):
    """The block's ``norm1`` / ``norm2`` (reference ``OpenSoraNormZero``).

    ``Linear(Tc -> 6D)(SiLU(c))`` chunked as (shift, scale, gate, enc_shift, enc_scale, enc_gate); ``norm`` and
    ``norm_enc`` are the video and text LayerNorms. ``norm_enc`` is absent when the text stream is not updated
    (``with_text_norm=False``).
    """

    def __init__(self, cond_dim: int, dim: int, eps: float, with_text_norm: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, 6 * dim, bias=True)
        self.norm = FP32LayerNorm(dim, eps=eps)
        self.norm_enc = FP32LayerNorm(dim, eps=eps) if with_text_norm else None

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """c ``(B, Tc)`` fp32 -> six fp32 ``(B, 1, D)`` tensors in the reference's chunk order."""
        mod = self.linear(F.silu(c).to(self.linear.weight.dtype)).float()
        return tuple(m.unsqueeze(1) for m in mod.chunk(6, dim=-1))


class AdaNormOut(nn.Module):
    """``norm_out``: ``Linear(Tc -> 2D)(SiLU(c))`` -> (shift, scale), output ``norm(x) * (1 + scale) + shift``."""

    def __init__(self, cond_dim: int, dim: int, eps: float) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim, bias=True)
        self.norm = FP32LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x ``(B, L, D)``, c ``(B, Tc)`` fp32 -> ``(B, L, D)``."""
        shift, scale = self.linear(F.silu(c).to(self.linear.weight.dtype)).float().unsqueeze(1).chunk(2, dim=-1)
        return modulate(x, self.norm, shift, scale)

"""``SparseUMMDiT``: the U-shaped sparse MMDiT denoiser of Open-Sora Plan v1.5 (SUV), released key layout.

``forward(..., sp_group=G)`` splits the video tokens over the ranks of ``G`` (sequence parallelism): the contract,
inputs and gradients, is in ``suv.parallel.sequence``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..parallel import gather_tokens, split_tokens
from .attention import AttentionContext
from .block import SparseMMDiTBlock
from .config import SUVConfig, resolve_config
from .embeddings import PatchEmbed2D, TimeTextEmbedding
from .inputs import check_inputs
from .layers import AdaNormOut, FeedForward, FP32LayerNorm
from .rope import RoPE3D

# Modules of the last block that the TP>1 reference creates but never uses (spec 3.3); dropped on load.
_UNUSED_TEXT_BRANCH = ("attn1.to_add_out.", "ff_enc.", "norm2.norm_enc.")


def _skip_fusion(dim: int, zero_init: bool, eps: float) -> nn.Sequential:
    """``Sequential(norm_or_identity, Linear(2D -> D))`` over ``cat([current, skip], -1)``.

    Zero-init: identity (no norm), ``W = [I | 0]``, bias 0, so at init the current stream passes through and the
    skip is ignored.
    """
    linear = nn.Linear(2 * dim, dim)
    if zero_init:
        with torch.no_grad():
            linear.weight.zero_()
            linear.weight[:, :dim].copy_(torch.eye(dim))
            linear.bias.zero_()
    return nn.Sequential(nn.Identity() if zero_init else FP32LayerNorm(2 * dim, eps=eps), linear)


class SparseUMMDiT(nn.Module):
    """Sparse U-shaped MMDiT. Arguments are the fields of ``SUVConfig`` (the reference config's names).

    Stage ``s`` has ``num_layers[s]`` blocks with Skiparse sparsity ``sparse_n[s]``; inside a stage with k > 1,
    block ``i`` is single-skip for even ``i`` and group-skip for odd ``i``; k = 1 stages are dense.
    ``sparse1d=False`` forces k = 1 everywhere (a dense MMDiT with the same weights). Encoder stages
    ``0..n-1`` push (video, text) onto a skip stack; decoder stage ``n+1+j`` pops and fuses it with
    ``skip_norm_linear[j]`` / ``skip_norm_linear_enc[j]`` before its blocks.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = self.config = SUVConfig(**config)
        self.sparsity = [k if cfg.sparse1d else 1 for k in cfg.sparse_n]
        dim, eps, tc = cfg.dim, cfg.norm_eps, cfg.timestep_embed_dim
        self.dim = dim
        self.patch_size_t, self.patch_size = cfg.patch_size_t, cfg.patch_size
        self.in_channels, self.out_channels = cfg.in_channels, cfg.out_channels

        self.patch_embed = PatchEmbed2D(cfg.in_channels, dim, cfg.patch_size)
        self.time_text_embed = TimeTextEmbedding(tc, cfg.pooled_projection_dim)
        self.caption_projection = nn.Linear(cfg.caption_channels, dim)
        self.rope = RoPE3D(cfg.head_dim, interpolation_scale=(
            cfg.interpolation_scale_t, cfg.interpolation_scale_h, cfg.interpolation_scale_w))  # fmt: skip
        num_layers, last = cfg.num_layers, len(cfg.num_layers) - 1
        self.transformer_blocks = nn.ModuleList(
            nn.ModuleList(
                SparseMMDiTBlock(dim, cfg.num_heads, cfg.head_dim, tc, sparsity=k, group=k > 1 and i % 2 == 1,
                                 double_ff=cfg.double_ff, attention_bias=cfg.attention_bias, ff_bias=cfg.ff_bias,
                                 eps=eps, context_pre_only=(s == last and i == num_layers[s] - 1))  # fmt: skip
                for i in range(num_layers[s])
            )
            for s, k in enumerate(self.sparsity)
        )
        self.num_skips = len(num_layers) // 2 if cfg.skip_connection else 0
        if self.num_skips:
            zero = cfg.skip_connection_zero_init
            self.skip_norm_linear = nn.ModuleList(_skip_fusion(dim, zero, eps) for _ in range(self.num_skips))
            self.skip_norm_linear_enc = nn.ModuleList(_skip_fusion(dim, zero, eps) for _ in range(self.num_skips))
        self.norm_final = FP32LayerNorm(dim, eps=eps)
        self.norm_out = AdaNormOut(tc, dim, eps)
        self.proj_out = nn.Linear(dim, cfg.patch_size_t * cfg.patch_size**2 * cfg.out_channels)
        self.register_load_state_dict_pre_hook(self._drop_unused_keys)

    @classmethod
    def from_config(cls, config: SUVConfig | Mapping[str, Any] | str) -> SparseUMMDiT:
        """From a ``SUVConfig``, a reference config dict (model JSON or its ``predictor`` block) or a ``PRESETS``
        name."""
        return cls(**dataclasses.asdict(resolve_config(config)))

    def checkpoint_feedforwards(self, enabled: bool = True) -> int:
        """Recompute every FFN in the backward instead of keeping its activations (selective activation
        checkpointing); returns how many FFNs it applies to."""
        ffns = [m for m in self.modules() if isinstance(m, FeedForward)]
        for ffn in ffns:
            ffn.recompute = enabled
        return len(ffns)

    def unused_checkpoint_keys(self, state_dict: Mapping[str, Any], prefix: str = "") -> list[str]:
        """Keys of ``state_dict`` this model ignores: ``*._extra_state`` (Megatron) and the last block's text
        branch (``to_add_out`` / ``ff_enc`` / ``norm2.norm_enc``, present in TP>1 checkpoints, never used)."""
        s = len(self.transformer_blocks) - 1
        last = f"{prefix}transformer_blocks.{s}.{len(self.transformer_blocks[s]) - 1}."
        block = self.transformer_blocks[s][-1]
        branch = [p for p in _UNUSED_TEXT_BRANCH if not (p == "norm2.norm_enc." and block.norm2.norm_enc is not None)]
        return [
            k for k in state_dict
            if k.startswith(prefix) and (k.endswith("._extra_state") or any(k.startswith(last + p) for p in branch))
        ]  # fmt: skip

    def _drop_unused_keys(self, module, state_dict, prefix, *args) -> None:
        # Runs before any submodule loads, so a plain load_state_dict(strict=True) accepts released dicts.
        for key in self.unused_checkpoint_keys(state_dict, prefix):
            del state_dict[key]

    def _context(self, batch: int, grid: tuple[int, int, int], device: torch.device,
                 encoder_attention_mask: torch.Tensor, attention_mask: torch.Tensor | None,
                 sp_group=None, chunk: slice | None = None) -> AttentionContext:  # fmt: skip
        """RoPE tables and key masks shared by every attention call of one forward (None = nothing masked); under
        sequence parallelism the tables are this rank's ``chunk`` (the video mask stays whole: keys are all)."""
        cos, sin = self.rope.tables(grid, device)
        if chunk is not None:
            cos, sin = cos[chunk], sin[chunk]
        text_mask = encoder_attention_mask.reshape(batch, -1) > 0.5
        video_mask = None
        if attention_mask is not None:
            pooled = F.max_pool3d(attention_mask.float().unsqueeze(1),
                                  kernel_size=(self.patch_size_t, self.patch_size, self.patch_size))  # fmt: skip
            video_mask = pooled.reshape(batch, -1) > 0.5
            video_mask = None if bool(video_mask.all()) else video_mask
        text_mask = None if bool(text_mask.all()) else text_mask
        return AttentionContext(cos, sin, self.rope, text_mask, video_mask, sp_group if chunk is not None else None)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None, pooled_projections: torch.Tensor,
                attention_mask: torch.Tensor | None = None, sp_group=None) -> torch.Tensor:  # fmt: skip
        """Predict the flow-matching velocity.

        Args:
            hidden_states: latent ``(B, C_in, T, H, W)``; T, H, W divisible by the patch.
            timestep: ``(B,)`` (or a scalar) float, ``1000 * sigma``.
            encoder_hidden_states: T5 features ``(B, 1, L_txt, caption_channels)`` (or without the 1).
            encoder_attention_mask: ``(B, 1, L_txt)`` (or ``(B, L_txt)``), 1 = real token; None = all real.
            pooled_projections: CLIP pooled embedding ``(B, 1, P)`` (or ``(B, P)``).
            attention_mask: optional video mask ``(B, T, H, W)``, 1 = keep (max-pooled over each patch).
            sp_group: a process group to split the video tokens over (sequence parallelism, ``suv.parallel.sequence``:
                the same inputs on every rank, the same output, gradients summed over the group); None = whole.
        Returns:
            velocity ``(B, C_out, T, H, W)`` in the latent's dtype.
        """
        inp = check_inputs(self.config, hidden_states, timestep, encoder_hidden_states, encoder_attention_mask,
                           pooled_projections, attention_mask, self.caption_projection.weight.dtype)  # fmt: skip
        b, _, t, h, w = hidden_states.shape
        grid = (t // self.patch_size_t, h // self.patch_size, w // self.patch_size)
        x = self.patch_embed(hidden_states)
        chunk = split_tokens(x.shape[1], self.config.num_heads, sp_group)
        if chunk is not None:
            x = x[:, chunk]  # this rank's tokens; the slice's backward leaves the others' rows zero
        c = self.time_text_embed(inp.timestep, inp.pooled)
        e = self.caption_projection(inp.text)
        ctx = self._context(b, grid, x.device, inp.text_mask, attention_mask, sp_group, chunk)

        n, skips = len(self.transformer_blocks) // 2, []
        for s, stage in enumerate(self.transformer_blocks):
            if self.num_skips and s > n:  # decoder stage: fuse the mirrored encoder stage's output first
                j = s - n - 1
                x_skip, e_skip = skips.pop()
                x = self.skip_norm_linear[j](torch.cat([x, x_skip], dim=-1))
                e = self.skip_norm_linear_enc[j](torch.cat([e, e_skip], dim=-1))
            for block in stage:
                x, e = block(x, e, c, ctx)
            if self.num_skips and s < n:
                skips.append((x, e))

        x = self.proj_out(self.norm_out(self.norm_final(x), c))
        if chunk is not None:
            x = gather_tokens(x, ctx.sp_group)
        return self._unpatchify(x, grid)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(B, T'H'W', pt*p*p*C)`` with C fastest -> ``(B, C, T'*pt, H'*p, W'*p)``."""
        b, (t, h, w), pt, p = x.shape[0], grid, self.patch_size_t, self.patch_size
        x = x.reshape(b, t, h, w, pt, p, p, self.out_channels)
        return torch.einsum("nthwopqc->nctohpwq", x).reshape(b, self.out_channels, t * pt, h * p, w * p)

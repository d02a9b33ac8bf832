"""SUV denoiser: FLOP model of the released 8.5B config, and a measured dense-vs-sparse forward side by side.

    python benchmarks/suv_denoiser.py --quick     # 4 latent frames (9,216 video tokens), ~15 s on one CPU core
    python benchmarks/suv_denoiser.py             # the full 36,864-token sequence (121x576x1024), ~3-7 min on CPU

Part 1 counts forward FLOPs (2 per multiply-add) of the released config at 121x576x1024: every Linear/Conv
from the model's own modules (on the meta device) times the tokens it sees, plus joint attention
``4 * k * (L/k + T)^2 * D`` per block. It prints the attention and whole-model SUV/dense ratios (spec: 0.393, 0.593).

Part 2 builds a reduced-width SUV (``suv-narrow``: the released 7-stage / 32-block structure and sparsity at
D = 32), copies the same random weights into the dense (``sparse1d=False``) variant, and times one forward of each
at the same latent, in one process. It reports the measured speedup next to the FLOP-ideal speedup of that
narrow config (at D = 32 attention dominates, so the ideal is close to the attention ratio).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn

from suv.models import PRESETS, SparseUMMDiT, SUVConfig

# Modules fed the text tokens, the per-sample conditioning (one row), or the video tokens (everything else).
_TEXT = ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_enc", "skip_norm_linear_enc", "caption_projection")
_COND = ("norm1.linear", "norm2.linear", "norm_out.linear", "time_text_embed")


def flop_model(config: SUVConfig, grid: tuple[int, int, int], text_len: int) -> dict:
    """Forward FLOPs of one sample: linear (video, text, conditioning) and attention, dense and SUV."""
    with torch.device("meta"):
        model = SparseUMMDiT.from_config(config)
    L = grid[0] * grid[1] * grid[2]
    linear = blocks_linear = 0
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            rows = text_len if any(t in name for t in _TEXT) else 1 if any(c in name for c in _COND) else L
            linear += 2 * rows * m.weight.numel()
            blocks_linear += 2 * rows * m.weight.numel() if name.startswith("transformer_blocks.") else 0
    blocks = [b.sparsity for stage in model.transformer_blocks for b in stage]
    per_k = lambda k: 4 * k * (L / k + text_len) ** 2 * model.dim  # noqa: E731  (QK^T and PV, every sub-sequence)
    attn_dense, attn_suv = per_k(1) * len(blocks), sum(per_k(k) for k in blocks)
    return {
        "tokens": L, "text_tokens": text_len, "linear_tflop": linear / 1e12,
        "attention_dense_tflop": attn_dense / 1e12, "attention_suv_tflop": attn_suv / 1e12,
        "attention_ratio": attn_suv / attn_dense,
        "total_dense_tflop": (linear + attn_dense) / 1e12, "total_suv_tflop": (linear + attn_suv) / 1e12,
        "total_ratio": (linear + attn_suv) / (linear + attn_dense),
        "attention_share_dense": attn_dense / (linear + attn_dense),
        # The spec's 820 -> 487 TFLOP (0.593) counts the 32 blocks only (no skip fusion, patch embed or head).
        "blocks_only_ratio": (blocks_linear + attn_suv) / (blocks_linear + attn_dense),
        "blocks_only_dense_tflop": (blocks_linear + attn_dense) / 1e12,
        "blocks_only_suv_tflop": (blocks_linear + attn_suv) / 1e12,
        "per_k_attention_vs_dense": {k: per_k(k) / per_k(1) for k in sorted(set(blocks))},
    }  # fmt: skip


def _inputs(config: SUVConfig, grid: tuple[int, int, int], text_len: int) -> dict:
    g = torch.Generator().manual_seed(0)
    t, h, w = grid
    p = config.patch_size
    return dict(
        hidden_states=torch.randn(1, config.in_channels, t, h * p, w * p, generator=g),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 1, text_len, config.caption_channels, generator=g),
        encoder_attention_mask=torch.ones(1, 1, text_len),
        pooled_projections=torch.randn(1, 1, config.pooled_projection_dim, generator=g),
    )


def measure(preset: str, grid: tuple[int, int, int], text_len: int, repeats: int) -> dict:
    """Best-of-``repeats`` forward time of the sparse model and its dense twin (same weights, same input)."""
    torch.manual_seed(0)
    sparse = SparseUMMDiT.from_config(preset).eval()
    dense = SparseUMMDiT.from_config(dataclasses.replace(sparse.config, sparse1d=False)).eval()
    dense.load_state_dict(sparse.state_dict(), strict=True)
    inp = _inputs(sparse.config, grid, text_len)
    times = {"dense": [], "sparse": []}
    with torch.no_grad():
        for _ in range(repeats):  # alternate so both see the same machine load
            for name, model in (("dense", dense), ("sparse", sparse)):
                start = time.perf_counter()
                model(**inp)
                times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    ideal = flop_model(sparse.config, grid, text_len)
    speedup = best["dense"] / best["sparse"]
    ideal_speedup = 1 / ideal["total_ratio"]
    return {
        "preset": preset, "grid": grid, "tokens": ideal["tokens"], "text_tokens": text_len, "repeats": repeats,
        "threads": torch.get_num_threads(), "dense_s": best["dense"], "sparse_s": best["sparse"],
        "measured_speedup": speedup, "flop_ideal_speedup": ideal_speedup, "fraction_of_ideal": speedup / ideal_speedup,
        "dense_gflops": ideal["total_dense_tflop"] * 1e3 / best["dense"],
        "sparse_gflops": ideal["total_suv_tflop"] * 1e3 / best["sparse"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 latent frames instead of 16 (9,216 video tokens)")
    parser.add_argument("--repeats", type=int, default=1, help="forward passes per model (best is reported)")
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a loaded shared CPU, thread hand-off in the many small "
                             "non-attention ops costs more than a second core gains)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    released = flop_model(PRESETS["suv-8.5b"], (16, 36, 64), 512)
    print("FLOP model, released 8.5B config, 121x576x1024 -> latent 16x72x128, 36,864 video + 512 text tokens")
    for k, r in released["per_k_attention_vs_dense"].items():
        print(f"  attention per block, k={k}: {r:.3f} of dense")
    print(f"  linear {released['linear_tflop']:.1f} TFLOP; attention dense {released['attention_dense_tflop']:.1f} "
          f"-> SUV {released['attention_suv_tflop']:.1f} TFLOP")  # fmt: skip
    print(f"  attention ratio SUV/dense {released['attention_ratio']:.3f} (spec 0.393); whole model "
          f"{released['total_dense_tflop']:.0f} -> {released['total_suv_tflop']:.0f} TFLOP, ratio "
          f"{released['total_ratio']:.3f}; ideal speedup {1 / released['total_ratio']:.2f}x")  # fmt: skip
    print(f"  blocks only (the spec's count): {released['blocks_only_dense_tflop']:.0f} -> "
          f"{released['blocks_only_suv_tflop']:.0f} TFLOP, ratio {released['blocks_only_ratio']:.3f} (spec 0.593); "
          f"attention is {100 * released['attention_share_dense']:.0f}% of dense FLOPs")  # fmt: skip

    grid = (4, 36, 64) if args.quick else (16, 36, 64)
    print(f"\nMeasured: suv-narrow (released stages, D=32), latent grid {grid} = {grid[0] * grid[1] * grid[2]:,} "
          f"tokens + {args.text_tokens} text, forward, {torch.get_num_threads()} threads")  # fmt: skip
    m = measure("suv-narrow", grid, args.text_tokens, args.repeats)
    print(f"  dense  {m['dense_s']:8.2f} s  ({m['dense_gflops']:.1f} GFLOP/s)")
    print(f"  sparse {m['sparse_s']:8.2f} s  ({m['sparse_gflops']:.1f} GFLOP/s)")
    print(f"  speedup measured {m['measured_speedup']:.2f}x vs FLOP-ideal {m['flop_ideal_speedup']:.2f}x "
          f"= {100 * m['fraction_of_ideal']:.0f}% of ideal (target >= 90%)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"released_flop_model": released, "measured": m}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

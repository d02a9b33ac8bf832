"""``suv-train --config configs/<name>.yaml --output DIR [--max-steps N] [--sequence-parallel N] [--resume]``;
under ``torchrun`` with DDP or FSDP, optionally splitting each clip's tokens over ``N`` ranks (``sequence_parallel``).

``data: toy`` in a config generates the small dataset of real mp4 clips (``make_toy_dataset``) in ``DIR/data``.
At the end it writes ``DIR/loss.png`` from ``DIR/metrics.jsonl``. A run stopped by an extreme gradient norm exits
with code 3 and resumes past the bad batch with ``--resume``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ..train import ExtremeGradNorm, Trainer, load_config, plot_losses


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-train``."""
    parser = argparse.ArgumentParser(prog="suv-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--max-steps", type=int, default=None, help="overrides the config's max_steps")
    parser.add_argument("--sequence-parallel", type=int, default=None, metavar="N",
                        help="overrides the config's sequence_parallel: ranks that split one clip's tokens")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/latest")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    args.output.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # under torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        overrides = {} if args.sequence_parallel is None else {"sequence_parallel": args.sequence_parallel}
        trainer = Trainer(load_config(args.config, args.output, overrides), args.output)
    except ValueError as e:
        raise SystemExit(f"suv-train: {e}") from e
    if args.resume and not trainer.resume():
        raise SystemExit(f"suv-train: --resume given but {args.output / 'checkpoints' / 'latest'} does not exist")
    try:
        rows = trainer.fit(args.max_steps, progress=not args.no_progress)
    except ExtremeGradNorm as e:
        print(f"suv-train: stopped: {e}", file=sys.stderr)
        return 3
    if rows:
        print(f"suv-train: step {trainer.step}, loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}")
    if plot_losses(args.output / "metrics.jsonl", args.output / "loss.png"):
        print(f"suv-train: wrote {args.output / 'loss.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

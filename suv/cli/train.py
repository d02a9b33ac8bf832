"""``suv-train --config C.yaml --output DIR [--max-steps N] [--sequence-parallel N] [--resume | --overwrite]``;
under ``torchrun`` with DDP or FSDP, optionally splitting each clip's tokens over ``N`` ranks (``sequence_parallel``).

``data: toy`` in a config generates the small dataset of real mp4 clips (``make_toy_dataset``) in ``DIR/data``.
At the end it writes ``DIR/loss.png`` from ``DIR/metrics.jsonl``. A run stopped by an extreme gradient norm exits
with code 3 and resumes past the bad batch with ``--resume``.

``DIR`` is locked while the run lasts (a second run on it fails at once, naming the holder); a folder holding a
previous run's outputs is refused unless ``--resume`` continues it or ``--overwrite`` starts it afresh.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ..io import CheckpointError, FolderLocked, folder_lock, remove_stale_temporaries
from ..train import ExtremeGradNorm, Trainer, load_config, plot_losses

# What a run writes in its folder; ``--overwrite`` removes these (and nothing else).
_RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "loss.png", "global_step_for_sampler.txt")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-train``."""
    parser = argparse.ArgumentParser(prog="suv-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--max-steps", type=int, default=None, help="overrides the config's max_steps")
    parser.add_argument("--sequence-parallel", type=int, default=None, metavar="N",
                        help="overrides the config's sequence_parallel: ranks that split one clip's tokens")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/latest")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUTPUT that holds a previous run (its checkpoints and metrics go)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be >= 1 (the absolute step to train to), got {args.max_steps}")
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output} is a file; expected a folder")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        with folder_lock(args.output, "run folder") if rank0 else contextlib.nullcontext():
            return _run(args, rank0)
    except (FolderLocked, OSError, CheckpointError) as e:
        raise SystemExit(f"suv-train: {e}") from e


def _prepare_folder(output: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write over a previous run unless told what to do with it; clean temporaries of killed writers."""
    previous = [name for name in _RUN_OUTPUTS if (output / name).exists()]
    if previous and not (resume or overwrite):
        raise SystemExit(f"suv-train: {output} holds a previous run ({', '.join(previous)}); pass --resume to "
                         "continue it, --overwrite to replace it, or choose another --output")  # fmt: skip
    if overwrite:
        for name in previous:
            path = output / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for folder in (output, output / "checkpoints"):
        remove_stale_temporaries(folder)


def _run(args: argparse.Namespace, rank0: bool) -> int:
    if rank0:
        _prepare_folder(args.output, args.resume, args.overwrite)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # under torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        overrides = {} if args.sequence_parallel is None else {"sequence_parallel": args.sequence_parallel}
        trainer = Trainer(load_config(args.config, args.output, overrides), args.output)
    except ValueError as e:
        raise SystemExit(f"suv-train: {e}") from e
    if args.resume and not trainer.resume():
        raise SystemExit(f"suv-train: --resume given but {args.output / 'checkpoints'} holds no checkpoint")
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

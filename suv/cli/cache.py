"""``suv-cache --config C.yaml --output DIR``: precompute the latent cache of a training config
(``suv.train.cache``); then ``cache: DIR`` in the config trains without loading any encoder. ``DIR`` is locked while
the build runs: a second build into it fails at once, naming the holder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..io import FolderLocked, folder_lock
from ..train import build_cache, load_config


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-cache``."""
    parser = argparse.ArgumentParser(prog="suv-cache", description="Precompute the latent cache of a training config")
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True, type=Path, help="cache folder (then `cache: <it>` in the config)")
    parser.add_argument("--shard-clips", type=int, default=64)
    args = parser.parse_args(argv)
    if args.shard_clips < 1:
        parser.error(f"--shard-clips must be >= 1, got {args.shard_clips}")
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output} is a file; expected a folder")
    try:
        with folder_lock(args.output, "cache folder"):
            index = build_cache(load_config(args.config, args.output), args.output, args.shard_clips)
    except (ValueError, OSError, FolderLocked) as e:
        raise SystemExit(f"suv-cache: {e}") from e
    summary = json.loads(index.read_text())
    print(f"suv-cache: wrote {index} ({summary['clips']} clips cached, {len(summary['skipped'])} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``suv-cache --config C.yaml --output DIR``: precompute the latent cache of a training config
(``suv.train.cache``); then ``cache: DIR`` in the config trains without loading any encoder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..train import build_cache, load_config


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-cache``."""
    parser = argparse.ArgumentParser(prog="suv-cache", description="Precompute the latent cache of a training config")
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True, type=Path, help="cache folder (then `cache: <it>` in the config)")
    parser.add_argument("--shard-clips", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        index = build_cache(load_config(args.config, args.output), args.output, args.shard_clips)
    except ValueError as e:
        raise SystemExit(f"suv-cache: {e}") from e
    summary = json.loads(index.read_text())
    print(f"suv-cache: wrote {index} ({summary['clips']} clips cached, {len(summary['skipped'])} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

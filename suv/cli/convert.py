"""``suv-convert SRC DST.safetensors [--config NAME|JSON] [--dtype bf16]``: a verified safetensors copy of a SUV
checkpoint (e.g. the released ``model_ema.pt``), written atomically."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..io import CheckpointError
from ..models import load_suv, save_suv
from .options import DTYPES


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``suv-convert``."""
    parser = argparse.ArgumentParser(prog="suv-convert", description=__doc__)
    parser.add_argument("src", help="SUV checkpoint (.pt / .safetensors, e.g. the released model_ema.pt)")
    parser.add_argument("dst", help="output .safetensors path (written atomically)")
    parser.add_argument("--config", default=None, help="preset name or reference JSON (default: stored or suv-8.5b)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights")
    args = parser.parse_args(argv)
    if Path(args.dst).suffix != ".safetensors":
        parser.error(f"dst must end in .safetensors, got {args.dst}")
    try:
        model = load_suv(args.src, config=args.config, dtype=DTYPES.get(args.dtype))
        save_suv(model, args.dst)
    except (CheckpointError, OSError, ValueError) as e:  # OSError: a missing source, a failed write
        parser.exit(2, f"suv-convert: error: {e}\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.dst}: {len(model.state_dict())} tensors, {n:,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

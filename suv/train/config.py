"""The training config (``configs/<name>.yaml``): its fields, their checks, and reading it from a YAML file."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch.distributed as dist

from .data import make_toy_dataset, valid_frame_count

_POSITIVE_INTS = ("t5_max_length", "num_frames", "height", "width", "hw_stride", "bucket_min_factor", "batch_size",
                  "grad_accum", "max_steps", "log_every", "save_every", "sequence_parallel")  # fmt: skip
# Number fields and the interval they must lie in: (low, high, low included, high included).
_RANGES = {"train_fps": (0, math.inf, False, False), "lr": (0, math.inf, False, False),
           "eps": (0, math.inf, False, False), "weight_decay": (0, math.inf, True, False),
           "ema_decay": (0, 1, True, True), "clip_decay": (0, 1, True, False),
           "clip_max_norm": (0, math.inf, False, False), "cfg_drop": (0, 1, True, True),
           "min_hxw": (0, math.inf, True, False)}  # fmt: skip


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_type(name: str, kind: str, value) -> None:
    """ValueError naming ``name`` if ``value`` does not have the annotated ``kind`` (``int``, ``str | None``...)."""
    if value is None and kind.endswith("| None"):
        return
    kind = kind.removesuffix(" | None")
    ok = {"int": lambda v: _is_number(v) and isinstance(v, int), "float": lambda v: _is_number(v) and math.isfinite(v),
          "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
          "tuple[float, float]": lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_number, v))
          }[kind]  # fmt: skip
    if not ok(value):
        names = {"float": "a finite number", "int": "an integer", "tuple[float, float]": "two numbers"}
        what = names.get(kind, f"a {kind}")
        raise ValueError(f"{name}: expected {what}, got {value!r}")


@dataclass
class TrainConfig:
    """What ``configs/<name>.yaml`` holds. Paths are relative to the config file's folder."""

    data: str  # annotation JSON
    cache: str | None = None  # latent cache folder (suv-cache); None encodes the clips at every step
    model: str = "suv-tiny"  # SUV preset or reference config JSON
    vae: str = "tiny"  # WF-VAE preset, or a checkpoint path
    t5: str | None = None  # local T5 directory; None = tiny random encoders (tests, demos)
    clip: str | None = None
    t5_max_length: int = 512
    num_frames: int = 9
    height: int = 64  # fixed training size, unless max_hxw selects Min-Max tokens buckets
    width: int = 64
    max_hxw: int | None = None  # Min-Max tokens: largest pixel area (v1.5 images: 65,536 at 256x256)
    min_hxw: int = 0  # clips with a smaller area are dropped
    hw_stride: int = 16
    bucket_min_factor: int = 4  # buckets with fewer than factor x global batch clips are dropped
    train_fps: float = 24.0
    batch_size: int = 2
    grad_accum: int = 1
    max_steps: int = 100
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-15
    weight_decay: float = 1e-4
    ema_decay: float = 0.9999
    clip_mode: str = "adaptive"  # or "fixed"
    clip_decay: float = 0.99  # adaptive: EMA decay of the norm statistics
    clip_max_norm: float = 1.0  # fixed
    cfg_drop: float = 0.1  # probability that a caption becomes ""
    seed: int = 1024
    log_every: int = 1
    save_every: int = 50
    device: str = "cpu"
    checkpoint_ff: bool = False  # selective activation checkpointing: recompute every FFN in the backward
    parallel: str = "ddp"  # under torchrun: "ddp" (replicated weights) or "fsdp" (FSDP2 fully_shard per block)
    sequence_parallel: int = 1  # ranks that split one clip's video tokens (Ulysses); world % N == 0

    @classmethod
    def from_dict(cls, raw: dict, base: Path | None = None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        cfg = cls(**raw)
        if base is not None:
            for name in ("data", "cache", "t5", "clip"):
                value = getattr(cfg, name)
                if value is not None and not Path(value).is_absolute():
                    setattr(cfg, name, str(base / value))
        cfg._check_values()
        cfg.betas = tuple(cfg.betas)
        if cfg.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel: expected 'ddp' or 'fsdp', got {cfg.parallel!r}")
        if cfg.clip_mode not in ("adaptive", "fixed"):
            raise ValueError(f"clip_mode: expected 'adaptive' or 'fixed', got {cfg.clip_mode!r}")
        if cfg.hw_stride % 16:
            raise ValueError(f"hw_stride: expected a multiple of 16 (WF-VAE 8x times patch 2), got {cfg.hw_stride}")
        if valid_frame_count(cfg.num_frames) != cfg.num_frames:
            raise ValueError(f"num_frames: expected (T - 1) % 8 == 0, got {cfg.num_frames}")
        for name in ("height", "width"):
            if getattr(cfg, name) % 16:
                raise ValueError(f"{name}: expected a multiple of 16 (WF-VAE 8x times patch 2), got "
                                 f"{getattr(cfg, name)}")  # fmt: skip
        return cfg

    def _check_values(self) -> None:
        """ValueError naming the first key whose value has the wrong type or lies outside its range."""
        for f in fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        for name in _POSITIVE_INTS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.max_hxw is not None and self.max_hxw < 1:
            raise ValueError(f"max_hxw: expected a positive pixel area or null, got {self.max_hxw}")
        for name, (lo, hi, lo_in, hi_in) in _RANGES.items():
            v = getattr(self, name)
            if not ((lo <= v if lo_in else lo < v) and (v <= hi if hi_in else v < hi)):
                raise ValueError(f"{name}: expected a value in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"
                                 f", got {v}")  # fmt: skip


def load_config(path: str | Path, output: Path, overrides: dict | None = None) -> TrainConfig:
    """The YAML config with ``overrides`` (command-line values, same keys) applied before validation.

    ``data: toy`` generates the small dataset of real mp4 clips (``make_toy_dataset``) in ``output/data``.
    ValueError if the file cannot be read or a value is invalid."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read --config {path}: {e}") from e
    raw.update(overrides or {})
    if raw.get("data") == "toy":
        folder = output / "data"
        if not dist.is_initialized() or dist.get_rank() == 0:
            make_toy_dataset(folder)
        if dist.is_initialized():
            dist.barrier()
        raw["data"] = str((folder / "annotations.json").resolve())
    return TrainConfig.from_dict(raw, base=path.parent.resolve())

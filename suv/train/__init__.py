"""Training Open-Sora Plan v1.5 style: flow-matching objective, adaptive gradient clipping, EMA of weights, data
(annotation index, buckets, latent cache), DDP / FSDP2 and sequence parallelism (``suv.parallel``)."""
from .cache import build_cache, read_cache
from .config import TrainConfig, load_config
from .metrics import plot_losses
from .trainer import ExtremeGradNorm, Trainer

__all__ = ["ExtremeGradNorm", "TrainConfig", "Trainer", "build_cache", "load_config", "plot_losses", "read_cache"]

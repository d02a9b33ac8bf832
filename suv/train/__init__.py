"""Training Open-Sora Plan v1.5 style: flow-matching objective, adaptive gradient clipping, EMA of weights, data
(annotation index, buckets, latent cache), DDP / FSDP2 and sequence-parallel Skiparse attention; ``suv-train``."""
from .sequence_parallel import sequence_parallel_attention

__all__ = ["sequence_parallel_attention"]
